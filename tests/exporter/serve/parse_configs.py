"""Runs in the Triton environment: parse config.pbtxt files with Triton's own schema (tritonclient's
model_config_pb2; text_format.Parse rejects unknown fields and bad values) and print what they say."""
import json
import sys

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

out = {}
for path in sys.argv[1:]:
    try:
        cfg = text_format.Parse(open(path).read(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        out[path] = {"error": str(e)}
        continue
    out[path] = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
print(json.dumps(out))
