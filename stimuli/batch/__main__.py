"""``python -m stimuli.batch schema``: print the manifest's JSON Schema (``docs/batch-manifest.schema.json``)."""

import sys

from .schema import json_schema_text

if sys.argv[1:] != ["schema"]:
    sys.exit("usage: python -m stimuli.batch schema > docs/batch-manifest.schema.json")
sys.stdout.write(json_schema_text())
