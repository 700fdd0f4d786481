"""Generated from the .proto files beside it by scripts/gen_protos.py. Do not edit."""
