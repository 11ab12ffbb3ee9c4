"""Prompt categories for category leaderboards (LMArena shows coding, math, multi-turn, longer query, non-English,
creative writing and hard-prompt boards beside the overall one), computed from the prompt text with rules that run
on a CPU at Arena scale: Arrow's RE2 kernels over all the user turns of a battle joined, one pass per rule.

    code              a fenced ``` block, a line that reads as code (def / class / import / #include / function
                      / const x = / SELECT ... FROM / console.log ...), or a programming word (python, javascript,
                      sql, regex, "code", "script", "program", debug, compile, ...)
    math              LaTeX (\\frac, \\sqrt, $...$), arithmetic between numbers (3 * 4, 2^10, x = 5), or a math
                      word (equation, integral, derivative, probability, solve for, calculate, theorem, ...); in
                      a prompt of 150 tokens or more, three such marks
    multi-turn        more than one user turn
    long-query        the user turns hold 500 tokens or more (the style tokenizer's count: words and symbols)
    non-english       a third or more of the letters outside ASCII (other scripts), or more function words of
                      Spanish / French / German / Portuguese / Italian than of English
    creative-writing  a request to write a story, poem, song, lyrics, haiku, script for a scene ..., roleplay, or
                      fiction words (once upon a time, short story, fanfic, in the style of)
    hard              technical (code or math) and specific (40+ tokens) and demanding: a constraint or demand
                      (must, without, at least, step by step, explain why, design, implement, optimize, prove,
                      ...) or several parts (a list, several questions or sentences)

A battle's categories are a bit mask (bit j for CATEGORIES[j]). LMArena labels its categories with an LLM; these
rules are cheaper and cruder: docs/leaderboards.md gives each one's precision on hand-checked sample prompts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arenapref.ratings.style import count_tokens, parse_turn_lists

CATEGORIES = ("code", "math", "multi-turn", "long-query", "non-english", "creative-writing", "hard")
LONG_QUERY_TOKENS = 500
HARD_TOKENS = 40
MATH_SHORT_TOKENS = 150

_CODE = "|".join([
    r"```",
    r"(?m)^\s*(def \w+\(|class \w+[:(]|import \w+|from [\w.]+ import|#include\s*<|public (static|class|void) "
    r"|function\s*\w*\s*\(|(const|let|var) \w+\s*=|console\.log|System\.out|printf\(|print\(|return \w)",
    r"(?i)\bselect\s+[\w*, ]+\s+from\s+\w",
    r"(?i)\b(python|javascript|typescript|java|c\+\+|c#|golang|rust code|kotlin|swift code|php|perl|matlab|"
    r"sql|html|css|bash|powershell|regex|regular expression|api|sdk|numpy|pandas|pytorch|"
    r"tensorflow|react|django|flask|node\.?js|docker|kubernetes|git|github|linux command|code|coding|codes|"
    r"(python|bash|shell|batch|lua|unity|editor) script|script (to|that|which)|write a program|"
    r"program (in|to|that)|programming|debug|compile|compiler|algorithm|function in|snippet|stack trace|"
    r"syntax error|exception)\b",
])
_MATH_NOTATION = "|".join([
    r"\\(frac|sqrt|int|sum|cdot|times|leq|geq|infty|lim|log|sin|cos|binom)\b",
    r"\$[^$\s][^$\n]{0,100}[^$\s]\$|\$\w\$",
    r"\d\s*[+*×÷^=]\s*\(?-?\d|\d\s+/\s+\d",
    r"\b[a-z]\s*(\^|\*\*)\s*\d",
])
_MATH_WORDS = "|".join([
    r"(?i)\b(equation|equations|integral|integrate|derivative|differentiate|probability|theorem|prove that|"
    r"polynomial|matrix|matrices|algebra|geometry|arithmetic|factorial|prime number|square root|logarithm|"
    r"calculate|calculus|solve for|solve the|solve this|mathematically|math|maths|mathematics|triangle|"
    r"hypotenuse|fraction|"
    r"what is \d|sum of|product of|divisible|remainder|modulo|expected value|"
    r"variance|eigen\w*|inequality|quadratic|linear function)\b",
])
_CREATIVE = "|".join([
    r"(?i)\b(write|compose|create|generate|draft|tell|make|give)( me| us)?( a| an| the| some| \d+| another)?"
    r"( \w+){0,4}? (story|stories|poem|poems|poetry|haiku|limerick|sonnet|song|songs|lyrics|rap|verse|verses|"
    r"ballad|screenplay|fable|tale|novel|chapter|monologue|fanfic|fan fiction|joke|jokes|riddle|slogan)\b",
    r"(?i)(^|[^-\w])(roleplay|role-play|role play|once upon a time|short story|fiction|fictional|in the style of|"
    r"write a scene|script for a|continue the story|rap battle|plot twist)\b",
])
_FOREIGN_WORDS = (r"(?i)\b(der|das|und|ist|nicht|ein|eine|ich|sie|wie|mit|für|el|los|las|que|por|para|"
                  r"una|como|es|en|del|le|les|des|est|pas|une|avec|pour|dans|je|vous|il|di|"
                  r"che|sono|della|um|uma|com|isso)\b")
_ENGLISH_WORDS = (r"(?i)\b(the|and|is|are|to|of|in|it|you|for|what|how|i|this|that|with|be|on|can|a|an|my|me|do|"
                  r"does|why|write|please|your|have|from|as|at|or|if|not|give|was|will|who|which|there|about)\b")
_LETTER, _ASCII_LETTER = r"\pL", r"[A-Za-z]"
_DEMAND = (r"(?i)\b(must|should|without|at least|at most|exactly|ensure|step[- ]by[- ]step|explain why|explain how|"
           r"compare|design|implement|optimi[sz]e|analy[sz]e|prove|derive|evaluate|trade-?offs?|constraints?|"
           r"requirements?|edge cases?|efficient|complexity|justify)\b")
_LIST_ITEM = r"(?m)^\s*(\d+[.)]|[-*•])\s"


def _user_text(turns: pa.ListArray) -> pa.Array:
    """All turns of each prompt joined by a blank line (a null turn as empty)."""
    flat = pc.list_flatten(turns).fill_null("")
    offsets = pc.subtract(turns.offsets, turns.offsets[0]) if len(turns) else turns.offsets
    rebuilt = pa.ListArray.from_arrays(offsets, flat)
    return pc.binary_join(rebuilt, "\n\n")


def _count(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(text, pattern).to_numpy(zero_copy_only=False)


def _match(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False)


def category_flags(cells: pa.Array, where: str = "input column prompt", first_row: int = 0) -> dict[str, np.ndarray]:
    """{category: (n,) bool} for prompts as JSON-encoded turn lists (the Kaggle `prompt` column) or list<string>."""
    turns = parse_turn_lists(cells, where, first_row)
    n_turns = pc.list_value_length(turns).to_numpy(zero_copy_only=False)
    text = _user_text(turns)
    tokens = count_tokens(text)
    code = _match(text, _CODE)
    # A long text (an article to summarise) holds a stray "x = 2" or "calculate": there, three math marks.
    math_marks = _count(text, _MATH_NOTATION) + _count(text, _MATH_WORDS)
    math = ((math_marks >= 1) & (tokens < MATH_SHORT_TOKENS)) | (math_marks >= 3)
    letters = _count(text, _LETTER)
    non_ascii = letters - _count(text, _ASCII_LETTER)
    foreign, english = _count(text, _FOREIGN_WORDS), _count(text, _ENGLISH_WORDS)
    questions = _count(text, r"\?")
    sentences = _count(text, r"[.!?](\s|$)")
    several_parts = (_count(text, _LIST_ITEM) >= 2) | (questions >= 2) | (sentences >= 3)
    return {
        "code": code,
        "math": math,
        "multi-turn": n_turns > 1,
        "long-query": tokens >= LONG_QUERY_TOKENS,
        "non-english": ((non_ascii > 0) & (3 * non_ascii >= letters)) | ((foreign > english) & (foreign >= 2)),
        "creative-writing": _match(text, _CREATIVE),
        "hard": (code | math) & (tokens >= HARD_TOKENS) & (_match(text, _DEMAND) | several_parts),
    }


def user_texts(cells: pa.Array, where: str = "input column prompt", first_row: int = 0) -> np.ndarray:
    """(n,) object array: each prompt's user turns joined by a blank line."""
    return _user_text(parse_turn_lists(cells, where, first_row)).to_numpy(zero_copy_only=False)


def category_bits(cells: pa.Array, where: str = "input column prompt", first_row: int = 0) -> np.ndarray:
    """(n,) uint8 bit masks of the prompts' categories: bit j set when the prompt is in CATEGORIES[j]."""
    flags = category_flags(cells, where, first_row)
    bits = np.zeros(len(cells), dtype=np.uint8)
    for j, name in enumerate(CATEGORIES):
        bits |= flags[name].astype(np.uint8) << j
    return bits
