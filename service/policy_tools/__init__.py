"""Tools that run the engine over policies, above it: a policy owner's and an operator's.

- ``golden``: a policy version's golden cases, checked (``rules check``);
- ``diff``: what changed between two versions of a policy (``rules diff``);
- ``impact``: stored evaluations replayed under another version (``rules impact``).
"""
