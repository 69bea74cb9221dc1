#!/usr/bin/env python3
"""Validate oreo dataset manifests against schemas/manifest.schema.json (the Swift reader's checks are stricter).

Usage: check_manifest_schema.py DATASET_DIR... ; also checks that known-bad edits are rejected by the schema."""
import copy, json, pathlib, sys

import jsonschema

root = pathlib.Path(__file__).resolve().parent.parent
schema = json.loads((root / "schemas" / "manifest.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

bad_edits = {
    "u16 with a large vocabulary": lambda m: m.update(vocab_size=70000, token_dtype="u16"),
    "path in a file name": lambda m: m["shards"][0].update(file="../x.oreo"),
    "short checksum": lambda m: m["shards"][0].update(xxh3="abc"),
    "unknown field": lambda m: m.update(extra=1),
    "unknown compression": lambda m: m.update(compression="lz4"),
}

failures = 0
for d in sys.argv[1:]:
    manifest = json.loads((pathlib.Path(d) / "manifest.json").read_text())
    errors = list(validator.iter_errors(manifest))
    for e in errors:
        print(f"{d}/manifest.json: {e.json_path}: {e.message}")
    failures += len(errors)
    if manifest["shards"]:
        for name, edit in bad_edits.items():
            m = copy.deepcopy(manifest)
            edit(m)
            if validator.is_valid(m):
                print(f"schema accepts a manifest with {name}")
                failures += 1
print(f"schema: {len(sys.argv) - 1 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
