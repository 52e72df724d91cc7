import numpy as np
import polars as pl
import pytest

from licanom.data.states import METHOD_GROUPS, MethodGroup, action_expr, decode, decode_array, is_valid_state, make_state, success_expr


@pytest.mark.parametrize("group", list(MethodGroup))
@pytest.mark.parametrize("success", [True, False])
def test_every_group_decodes(group, success):
    state = make_state(group, success, detail=3)
    assert decode(state) == (group, success, 3)
    frame = pl.DataFrame({"State": [state]})
    row = frame.select(
        is_valid_state(pl.col("State")).alias("ok"),
        success_expr(pl.col("State")).alias("s"),
        action_expr(pl.col("State")).alias("a"),
    ).row(0)
    assert row == (True, int(success), int(group) * 10 + 3)


@pytest.mark.parametrize("bad", [0, 999, 1000, 1031, 1001, 9010, 4510, 10000, -1010])
def test_unknown_states_rejected(bad):
    with pytest.raises(ValueError):
        decode(bad)
    assert not pl.DataFrame({"s": [bad]}).select(is_valid_state(pl.col("s"))).item()


def test_decode_array_matches_scalar():
    states = np.array([make_state(g, s, d) for g in METHOD_GROUPS for s in (True, False) for d in (0, 9)])
    success, action = decode_array(states)
    for st, su, ac in zip(states, success, action, strict=True):
        g, ok, d = decode(int(st))
        assert su == int(ok) and ac == int(g) * 10 + d


def test_make_state_validates():
    with pytest.raises(ValueError):
        make_state(11, True)
    with pytest.raises(ValueError):
        make_state(MethodGroup.VALIDATION, True, detail=10)
