"""Policies as data, near the ground: nothing here imports the engine, FHIR, the web or the database.

- ``fields``: the field dictionary (``rules/fields.yaml``); ``sources``: its ``fhir:`` declarations;
- ``case``: the case model built from the dictionary;
- ``logic``: a criterion's logic (comparisons under all / any / not), parsed and checked;
- ``rules``: policy files loaded into versions and a catalogue;
- ``compiler``: a policy version compiled to durable-rules rulesets.
"""
