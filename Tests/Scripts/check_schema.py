#!/usr/bin/env python3
"""Validates YAML config files against config/causeway.schema.json (JSON Schema 2020-12).

Usage: check_schema.py SCHEMA FILE...   ${VAR:-default} is replaced by its default first, as
Causeway would with the variable unset. Prints one line per file; exit 1 if any is invalid.
"""
import json
import re
import sys

import jsonschema
import yaml

schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
failed = False
for path in sys.argv[2:]:
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", open(path).read())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(text)), key=str)
    for error in errors:
        print("%s: %s: %s" % (path, "/".join(map(str, error.path)), error.message))
    print("%s: %s" % (path, "invalid" if errors else "valid"))
    failed |= bool(errors)
sys.exit(1 if failed else 0)
