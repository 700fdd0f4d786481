"""A refusal's reason read the way a client in another language reads it: with nothing of
Python's google.rpc modules, only the .proto files we ship (compiled here by protoc into a
descriptor set, loaded into a pool of their own) and the bytes of the grpc-status-details-bin
trailer of a real refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc_tools
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences

THIRD_PARTY = Path(__file__).resolve().parents[2] / "protos" / "cmk_trio" / "proto" / "third_party"


def shipped_pool(tmp_path: Path) -> descriptor_pool.DescriptorPool:
    """google.rpc's messages from the shipped files alone, in a pool apart from Python's."""
    out = tmp_path / "rpc.pb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{THIRD_PARTY}", f"-I{well_known}", "--include_imports",
         f"--descriptor_set_out={out}", "google/rpc/status.proto", "google/rpc/error_details.proto"],
        check=True, capture_output=True,
    )  # fmt: skip
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def decode(message_class: type[Message], data: bytes) -> Any:  # a class made at run time: no stubs name its fields
    return message_class.FromString(data)


async def test_a_reason_decodes_with_the_shipped_protos_alone(tmp_path, operator, channel):
    pool = shipped_pool(tmp_path)
    status_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    info_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))
    bad_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.BadRequest"))
    token = await operator.token_for(audiences.DIRECTORY)
    call = pb_grpc.IdentityServiceStub(channel).CreateTenant(
        pb.CreateTenantRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    trailer = dict(refused.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = decode(status_class, trailer)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    infos = [decode(info_class, d.value) for d in status.details if d.type_url.endswith("/google.rpc.ErrorInfo")]
    bad = [decode(bad_class, d.value) for d in status.details if d.type_url.endswith("/google.rpc.BadRequest")]
    assert [i.reason for i in infos] == ["FIELD_REQUIRED"] and infos[0].domain
    assert [v.field for v in bad[0].field_violations] == ["tenant.display_name"]
