"""The protobuf edge: gRPC and protobuf in, domain calls out, and back.

Only this package imports grpc, grpc_health, grpc_reflection, google.protobuf and the
generated `trackd.v1` stubs (ruff's banned-api rule, TID251, enforces it): everything else in
trackd is plain Python that a test can drive without a channel, and a second front end (HTTP)
can call the same domain code.
"""
