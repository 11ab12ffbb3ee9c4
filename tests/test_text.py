
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
