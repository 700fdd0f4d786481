"""Azure Resource Manager's door: the management API of Azure, answered by the trio."""
