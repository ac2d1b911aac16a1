"""Generated protobuf and gRPC modules of the backend services; see generate.sh."""
