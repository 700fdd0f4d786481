"""Channels for clients: see services.rpckit.channels."""

from services.rpckit.channels import ChannelTls, open_channel

__all__ = ["ChannelTls", "open_channel"]
