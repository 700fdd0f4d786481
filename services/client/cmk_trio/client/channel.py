"""Channels for clients: see cmk_trio.rpckit.channels."""

from cmk_trio.rpckit.channels import ChannelTls, open_channel

__all__ = ["ChannelTls", "open_channel"]
