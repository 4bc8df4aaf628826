"""The engine, above the policy model: ``durable`` (the durable-rules C API host), ``evaluation``
(the one entry point: validate, run, word the result), ``result`` (wording plans), ``ids``."""
