"""Typed clients of the three services, for users and for service-to-service calls."""
