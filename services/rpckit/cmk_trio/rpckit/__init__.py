"""Shared gRPC plumbing for the three services, and nothing else: errors and their status
mapping, interceptors, server bootstrap, token validation, clock, storage and logging.

No domain logic lives here; services meet only through their protos.
"""
