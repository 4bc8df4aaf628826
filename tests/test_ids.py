"""Evaluation ids (service.engine.ids): version-4 UUIDs, all different, also across a fork."""

import os
import uuid

from service.engine.ids import new_id


def test_ids_are_version_4_uuids_written_as_uuid_writes_them_and_all_different():
    ids = [new_id() for _ in range(5000)]  # several reads of the random source
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert len(set(ids)) == len(ids)


def test_a_forked_child_hands_out_other_ids_than_its_parent():
    new_id()  # the parent has a buffer of unread ids
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, "\n".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        in_child = set(pipe.read().split("\n"))
    in_parent = {new_id() for _ in range(10)}
    assert len(in_child) == 10 and not in_child & in_parent
