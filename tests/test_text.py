
import pytest

from arenapref.data.text import Renderer, TextSettings, allocate, clip


def test_allocate_water_filling():
    assert allocate([10, 10], [1, 1], 100) == [10, 10]  # everything fits
    assert allocate([1000, 1000], [1, 2], 300) == [100, 200]  # weighted shares
    # a short field keeps all its tokens and the surplus goes to the long one
    assert allocate([20, 1000], [1, 1], 300) == [20, 280]
    alloc = allocate([50, 400, 30, 900], [1, 2, 1, 2], 301)
    assert sum(alloc) == 301 and alloc[0] == 50 and alloc[2] == 30
    assert allocate([0, 500], [1, 2], 100) == [0, 100]


def test_clip_sides():
    assert clip([1, 2, 3, 4], 2, "right") == [1, 2]
    assert clip([1, 2, 3, 4], 2, "left") == [3, 4]
    assert clip([1, 2], 5, "left") == [1, 2]


class CharTokenizer:
    """One token per character: enough to check budgets exactly."""

    cls_token_id, sep_token_id, bos_token_id, eos_token_id, pad_token_id = 1, 2, None, None, 0

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[10 + (ord(c) % 50) for c in t] for t in texts]}


@pytest.fixture
def renderer():
    return Renderer(CharTokenizer(), TextSettings(max_length=64, user_marker="U", assistant_marker="A"))


def test_side_respects_budget_and_keeps_the_response(renderer):
    prompts = renderer.tokenize_turn_lists([["p" * 500]])[0]
    response = renderer.tokenize_turn_lists([["r" * 500]])[0]
    ids = renderer.side(prompts, response)
    assert len(ids) == 64
    assert ids[0] == 1 and ids[-1] == 2
    n_prompt = ids.count(10 + ord("p") % 50)
    n_resp = ids.count(10 + ord("r") % 50)
    assert n_prompt + n_resp == 64 - 2 - 2  # cls, sep, two one-char markers
    assert n_resp == 2 * n_prompt  # response_weight 2


def test_long_prompt_does_not_crowd_out_short_response(renderer):
    ids = renderer.side(renderer.tokenize_turn_lists([["p" * 1000]])[0], renderer.tokenize_turn_lists([["ok"]])[0])
    assert len(ids) == 64
    assert ids[-3:-1] == renderer.tokenize(["ok"])[0]


def test_multi_turn_keeps_every_turn(renderer):
    prompt = renderer.tokenize_turn_lists([["a" * 40, "b" * 40, "c" * 40]])[0]
    response = renderer.tokenize_turn_lists([["x" * 40, "y" * 40, "z" * 40]])[0]
    ids = renderer.side(prompt, response)
    assert len(ids) == 64
    marker_u, marker_a = renderer.user[0], renderer.assistant[0]
    assert ids.count(marker_u) == 3 and ids.count(marker_a) == 3
    for ch in "abcxyz":
        assert 10 + ord(ch) % 50 in ids


def test_left_truncation_keeps_the_end():
    r = Renderer(CharTokenizer(), TextSettings(max_length=16, user_marker="U", assistant_marker="A",
                                               truncation_side="left"))
    ids = r.side(r.tokenize_turn_lists([[""]])[0], r.tokenize_turn_lists([["abcdefghijklmnopqrstuvwxyz"]])[0])
    assert ids[-2] == 10 + ord("z") % 50


def test_dual_tower_inputs_real_rows(small_csv, tiny_deberta):
    from transformers import AutoTokenizer

    from arenapref.data.tables import load_frame

    frame = load_frame(small_csv)
    r = Renderer(AutoTokenizer.from_pretrained(tiny_deberta), TextSettings(max_length=48))
    side_a, side_b = r.dual_tower_inputs(frame)
    assert len(side_a) == len(side_b) == len(frame)
    assert max(map(len, side_a + side_b)) <= 48
    same = frame.index[frame["response_a"] == frame["response_b"]]
    for i in same:
        assert side_a[i] == side_b[i]


# -- round-aligned joint packing ----------------------------------------------------------------------------------
def rounds_renderer(max_length: int, side: str = "right", packing: str = "rounds") -> Renderer:
    """One token per character; field markers Q / X / Y (one token each), the cut mark "…" one token."""
    return Renderer(CharTokenizer(), TextSettings(max_length=max_length, truncation_side=side, joint_packing=packing,
                                                  field_markers=("Q", "X", "Y")))


def tok(ch: str) -> int:
    return 10 + ord(ch) % 50


# Three rounds: (prompt, response A, response B) of 10/10/10, 4/6/6 and 3/5/5 tokens; each round costs its
# lengths plus 3 marker tokens (33, 19, 16).
THREE_ROUNDS = (["a" * 10, "e" * 4, "h" * 3], ["b" * 10, "f" * 6, "i" * 5], ["c" * 10, "g" * 6, "j" * 5])


def render(r: Renderer, prompt, resp_a, resp_b, record=None) -> list[int]:
    return r.joint(*(r.tokenize_turn_lists([turns])[0] for turns in (prompt, resp_a, resp_b)), record)


@pytest.mark.parametrize("side", ["right", "left"])
def test_rounds_keep_the_latest_rounds_whole_and_cut_the_earliest(side):
    # max_length 56: budget 54 without [CLS]/[SEP]. Rounds 3 and 2 whole (16 + 19 = 35, with 3 tokens kept free to
    # mark a drop); round 1 gets 54 - 35 - 3 markers = 16 tokens, 3 of them for the cut marks (all three turns
    # are cut): 13 shared 0.2/0.4/0.4 -> 2/5/5 plus the spare token to the first -> 3/5/5.
    r = rounds_renderer(56, side)
    record = {}
    ids = render(r, *THREE_ROUNDS, record=record)
    Q, X, Y, E = tok("Q"), tok("X"), tok("Y"), r.ellipsis[0]
    assert r.ellipsis == [tok("…")] and len(ids) == 56

    def cut(ch, n):  # the cut turn: "…" on the side its text was cut
        return [E] + [tok(ch)] * n if side == "left" else [tok(ch)] * n + [E]

    expected = ([1, Q] + cut("a", 3) + [Q] + [tok("e")] * 4 + [Q] + [tok("h")] * 3
                + [X] + cut("b", 5) + [X] + [tok("f")] * 6 + [X] + [tok("i")] * 5
                + [Y] + cut("c", 5) + [Y] + [tok("g")] * 6 + [Y] + [tok("j")] * 5 + [2])
    assert ids == expected
    assert record == {
        "inputs": "joint", "packing": "rounds", "max_length": 56, "tokens": 56, "truncated": True,
        "fields": {"prompt": [{"kept": 3, "tokens": 10}, {"kept": 4, "tokens": 4}, {"kept": 3, "tokens": 3}],
                   "response_a": [{"kept": 5, "tokens": 10}, {"kept": 6, "tokens": 6}, {"kept": 5, "tokens": 5}],
                   "response_b": [{"kept": 5, "tokens": 10}, {"kept": 6, "tokens": 6}, {"kept": 5, "tokens": 5}]},
        "rounds": 3, "rounds_dropped": 0, "overhead": {"special": 2, "markers": 9, "ellipsis": 3}}


def test_rounds_drop_a_round_too_small_to_show_and_mark_the_drop():
    # max_length 48: round 1 would get 46 - 35 - 3 = 8 tokens, 5 after its cut marks: under MIN_CUT_ROUND_TOKENS,
    # so it is dropped and every field's first shown turn starts with "…".
    r = rounds_renderer(48)
    record = {}
    ids = render(r, *THREE_ROUNDS, record=record)
    Q, X, Y, E = tok("Q"), tok("X"), tok("Y"), r.ellipsis[0]
    assert ids == ([1, Q, E] + [tok("e")] * 4 + [Q] + [tok("h")] * 3 + [X, E] + [tok("f")] * 6 + [X] + [tok("i")] * 5
                   + [Y, E] + [tok("g")] * 6 + [Y] + [tok("j")] * 5 + [2])
    assert record["rounds_dropped"] == 1 and record["truncated"] and record["tokens"] == len(ids) == 40
    assert [t["kept"] for t in record["fields"]["prompt"]] == [0, 4, 3]
    assert record["overhead"] == {"special": 2, "markers": 6, "ellipsis": 3}


@pytest.mark.parametrize("side", ["right", "left"])
def test_rounds_dropped_before_a_cut_round_are_marked_once_per_field(side):
    # A fourth, earliest round: round 2 of 4 is cut with 16 tokens; every field marks the dropped round first
    # (3 tokens), and with right truncation the cut ends too (3 more): 10 left -> 2/4/4; with left truncation the
    # cut start shares the drop's mark: 13 -> 3/5/5.
    r = rounds_renderer(56, side)
    prompt, resp_a, resp_b = (["z" * 7] + list(turns) for turns in THREE_ROUNDS)
    record = {}
    ids = render(r, prompt, resp_a, resp_b, record=record)
    assert len(ids) == 56
    kept = [2, 4, 4] if side == "right" else [3, 5, 5]
    assert [record["fields"][f][1]["kept"] for f in ("prompt", "response_a", "response_b")] == kept
    assert [record["fields"][f][0] for f in ("prompt", "response_a", "response_b")] == [{"kept": 0, "tokens": 7}] * 3
    assert record["rounds_dropped"] == 1 and record["overhead"]["ellipsis"] == (6 if side == "right" else 3)
    Q, E = tok("Q"), r.ellipsis[0]
    start = [Q, E] + ([tok("a")] * 2 + [E] if side == "right" else [tok("a")] * 3) + [Q]
    assert ids[1:1 + len(start)] == start


def test_rounds_whole_conversation_is_unmarked_and_uneven_lists_work():
    r = rounds_renderer(256)
    record = {}
    ids = render(r, *THREE_ROUNDS, record=record)
    assert tok("…") not in ids and not record["truncated"] and record["overhead"]["ellipsis"] == 0
    assert len(ids) == 2 + 33 + 19 + 16
    # A response list shorter than the prompt's: its missing turn is empty (its marker still aligns the round).
    record = {}
    ids = render(r, ["ab", "cd"], ["x"], ["y", "z"], record)
    assert ids == [1] + [tok(c) for c in "QabQcdXxXYyYz"] + [2]
    assert record["fields"]["response_a"] == [{"kept": 1, "tokens": 1}] and record["rounds"] == 2


def test_rounds_never_exceed_max_length_and_the_latest_round_always_shows():
    for max_length in range(8, 80):
        for side in ("left", "right"):
            r = rounds_renderer(max_length, side)
            record = {}
            ids = render(r, *THREE_ROUNDS, record=record)
            assert len(ids) <= max_length and record["tokens"] == len(ids)
            assert record["rounds_dropped"] <= 2  # the latest round is there
            kept = sum(t["kept"] for f in record["fields"].values() for t in f)
            assert kept + sum(record["overhead"].values()) == len(ids)


def test_fields_packing_is_kept_for_old_settings():
    assert TextSettings().joint_packing == "rounds"
    saved = TextSettings(joint_packing="fields").to_dict()
    del saved["joint_packing"]  # a "text" block saved before round packing existed
    assert TextSettings.from_dict(saved).joint_packing == "fields"
    assert TextSettings.from_dict({**saved, "joint_packing": "rounds"}).joint_packing == "rounds"
    with pytest.raises(ValueError, match="joint_packing"):
        TextSettings(joint_packing="interleaved")
