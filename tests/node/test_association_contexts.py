"""Each association gets its own copy of the node's presentation contexts (pynetdicom
deep-copies them per association, 100-250 ms of Python each; the node's copy shares
only the immutable UIDs)."""

from __future__ import annotations

from pynetdicom.presentation import PresentationContext

from node.dimse.upper_layer import _copy_contexts
from tests._peers import echoscu


def test_each_association_gets_independent_contexts(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    server = node.node._dimse
    originals: list[PresentationContext] = list(server.contexts)
    copied = _copy_contexts(server.contexts)
    assert len(copied) == len(originals) > 100
    for mine, theirs in zip(copied, originals, strict=True):
        assert mine is not theirs
        assert mine.abstract_syntax == theirs.abstract_syntax
        assert mine.transfer_syntax == theirs.transfer_syntax
        assert mine.transfer_syntax is not theirs.transfer_syntax
        assert (mine.scu_role, mine.scp_role) == (theirs.scu_role, theirs.scp_role)
    copied[0].context_id = 99
    copied[0].add_transfer_syntax("1.2.3")
    assert originals[0].context_id is None and "1.2.3" not in originals[0].transfer_syntax
    assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0
