"""Character and number rules for values the index stores, so that every stored record renders.

A record is served as XML (the default search format), JSON and lines of a shell script. XML 1.0
allows tab, newline and carriage return but no other C0 control character, no surrogate and
not U+FFFE/U+FFFF; a NUL in one record would make every search page that shows it malformed.
Identifiers, field names and URLs are stricter still: they are keys, file names and lines of
the wget script, where even a newline or a tab changes meaning, so they carry no control
character at all (C0, DEL or C1).
"""

from __future__ import annotations

import math
import re

from esgf_ha.records.errors import InvalidRecord

# characters XML 1.0 does not allow in a document (§2.2 Char)
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# fields that name things (records, hosts, files, checksums): no control characters at all
STRICT_FIELDS = frozenset(
    """id type dataset_id master_id instance_id data_node index_node version url xlink
    checksum checksum_type tracking_id title shard""".split()
)

# Solr's long and int ranges (esg-search's schema types them so)
LONG_RANGE = (-(2**63), 2**63 - 1)
INT_RANGE = (-(2**31), 2**31 - 1)


def _describe(char: str) -> str:
    return f"U+{ord(char):04X}"


def check_field_name(name: str) -> None:
    found = CONTROL.search(name) or NOT_XML.search(name)
    if found is not None or not name.strip() or name != name.strip():
        shown = _describe(found.group()) if found else "leading or trailing space"
        raise InvalidRecord(f"invalid field name {name!r}: {shown} is not allowed in a name")


def check_text(name: str, value: str) -> str:
    """`value` if a field `name` may hold it; InvalidRecord naming the character if not."""
    if value.isprintable():  # the common case, checked in C: no control character at all
        return value
    found = NOT_XML.search(value)
    if found is None and name in STRICT_FIELDS:
        found = CONTROL.search(value)
    if found is not None:
        raise InvalidRecord(
            f"field {name!r}: the character {_describe(found.group())} is not allowed "
            f"(at position {found.start()})"
        )
    return value


def check_float(name: str, number: float) -> float:
    if not math.isfinite(number):
        raise InvalidRecord(f"field {name!r}: {number!r} is not a finite number")
    return number


def check_int(name: str, number: int, *, long: bool) -> int:
    low, high = LONG_RANGE if long else INT_RANGE
    if not low <= number <= high:
        kind = "a 64-bit" if long else "a 32-bit"
        raise InvalidRecord(f"field {name!r}: {number} does not fit {kind} integer")
    return number


def xml_safe(text: str) -> str:
    """`text` with what XML 1.0 cannot carry replaced by U+FFFD, for rendering records
    stored before these rules (the store keeps them; a search must still answer)."""
    if text.isprintable():
        return text
    return NOT_XML.sub("\ufffd", text)
