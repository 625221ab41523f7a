import os

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.people.models import Person
from citybrain.core.people.service import ID_FIELD, PHONE_FIELD, reseal_personal_data
from citybrain.kit.crypto import FieldCipher
from citybrain.kit.keys import get_keyring
from tests.factories import STREET_A, TEST_ACTOR, make_person, make_user


def test_reseal_moves_every_field_to_the_new_key(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    made = [make_person(session, officer) for _ in range(3)]
    ring = get_keyring()
    old_kid = ring.active_field_kid
    new_key = os.urandom(32)
    rotated = FieldCipher({"k9": new_key, **ring.field_keys}, "k9")
    counts = reseal_personal_data(session, TEST_ACTOR, cipher=rotated, batch=2)
    assert counts["persons_resealed"] >= 3
    new_only = FieldCipher({"k9": new_key}, "k9")
    for person, synthetic in made:
        row = session.scalars(select(Person).where(Person.ref == person.ref)).one()
        assert rotated.key_id(row.id_number_enc) == "k9"
        assert new_only.decrypt(row.id_number_enc, ID_FIELD) == synthetic.id_number
        assert row.phone_enc is not None
        assert new_only.decrypt(row.phone_enc, PHONE_FIELD) == synthetic.phone
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "keys.reseal")).one()
    assert entry.object_id == "k9"
    # A second pass finds nothing left on the old key.
    again = reseal_personal_data(session, TEST_ACTOR, cipher=rotated)
    assert again["persons_resealed"] == 0
    with pytest.raises(Exception, match="no key"):
        FieldCipher({"k9": b"\0" * 32}, "k9").decrypt(
            FieldCipher({old_kid: ring.field_keys[old_kid]}, old_kid).encrypt("x", ID_FIELD),
            ID_FIELD,
        )
