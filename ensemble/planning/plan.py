"""`plan`: draft topics.yaml (and an outline) from the corpus itself, with no language model.

The passages that match the theme are clustered on their content terms (see `cluster`); each cluster becomes a
topic named by its most distinctive terms, whose queries are those terms, two or three to a query. The plan is
then checked with the real retrieval that `train-experts` runs (theme AND at least one query term, top_k per
query): while two topics' passage sets overlap by more than `max_overlap` (Jaccard), the query term that the
shared passages hold most is replaced by the next distinctive term of its topic.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from ..core.errors import ConfigError, EnsembleError
from ..core.progress import NullProgress, Progress
from ..retrieval.base import Hit, Retriever, open_retriever
from ..text.analyzers import analyze, analyze_tokens, check_name
from ..text.sentences import split_sentences
from .cluster import cluster_passages, ranked_terms, term_scores
from .terms import PassageTerms, content_terms, query_word, slug, unique_slugs

if TYPE_CHECKING:
    from ..config.project import ProjectConfig

K = TypeVar("K")

DEFAULT_TOP_K = 500  # TrainParams.top_k's default (training is a later stage; a test keeps the two equal)
MAX_OVERLAP = 0.5  # as train-experts warns: two topics sharing more are more shared than their own
MAX_THEME_PASSAGES = 10_000  # Elasticsearch's default max_result_window; a larger theme is sampled by score
TERMS_PER_QUERY = 3
MIN_TERMS_PER_QUERY = 2
STRONG = 1 / 3  # a third term of a query scores at least this share of its topic's best term
PROMPT_CHARS = 200
TITLE_TERMS = 3
QUOTES = re.compile("[\"'“”‘’「」『』«»]")
# A sentence that goes on from a quotation before it (`하고 그는 …`, `하며 …`): no way to open a section.
CONTINUES = re.compile(r"^(?:하고서?|하며|하면서|하자|하니|하더니|라고|라며|이라고)\s")


@dataclass(frozen=True)
class PlannedTopic:
    name: str  # slug (a-z, 0-9, -)
    title: str  # its most distinctive words
    queries: tuple[str, ...]
    cluster_size: int  # theme passages in its cluster
    representative: str  # id of the passage nearest the cluster's centre
    prompt: str  # the opening sentence(s) of that passage
    hits_per_query: tuple[int, ...]  # retrieved with the theme, top_k per query, as train-experts does
    passages: int  # distinct passages over its queries

    @property
    def hits(self) -> int:
        return sum(self.hits_per_query)


@dataclass(frozen=True)
class Plan:
    theme: str
    top_k: int
    seed: int
    theme_passages: int  # passages matching the theme (clustered)
    topics: tuple[PlannedTopic, ...]
    overlap: dict[tuple[str, str], float] = field(default_factory=dict)  # Jaccard of each pair's passage sets
    adjustments: int = 0  # query terms replaced to lower an overlap

    @property
    def mean_overlap(self) -> float:
        return sum(self.overlap.values()) / len(self.overlap) if self.overlap else 0.0

    @property
    def max_overlap(self) -> float:
        return max(self.overlap.values(), default=0.0)

    def topic_overlap(self, name: str) -> tuple[str, float] | None:
        """The topic this one shares most with, and the Jaccard of their passage sets."""
        pairs = [(b if a == name else a, j) for (a, b), j in self.overlap.items() if name in (a, b)]
        return max(pairs, key=lambda p: (p[1], p[0]), default=None)

    def topics_dict(self) -> dict[str, Any]:
        return {
            "theme": self.theme,
            "defaults": {"top_k": self.top_k},
            "topics": [{"name": t.name, "title": t.title, "queries": list(t.queries)} for t in self.topics],
        }

    def outline_dict(self) -> dict[str, Any]:
        return {
            "title": self.theme,
            "sections": [{"heading": t.title, "expert": t.name, "prompt": t.prompt} for t in self.topics],
        }

    def topics_yaml(self) -> str:
        head = [
            f"# Drafted by `ensemble plan` from the {self.theme_passages} passages that match the theme "
            f"(seed {self.seed}); edit freely.",
            "# Per topic: theme passages in its cluster; passages its queries retrieve (theme AND a query term,",
            f"# top {self.top_k} each); largest overlap (Jaccard) with another topic. Mean overlap "
            f"{self.mean_overlap:.2f}, max {self.max_overlap:.2f}.",
        ]
        for t in self.topics:
            other = self.topic_overlap(t.name)
            shared = f", overlap {other[1]:.2f} with {other[0]}" if other else ""
            head.append(f"#   {t.name}: cluster {t.cluster_size}, retrieves {t.passages}{shared}")
        return "\n".join(head) + "\n" + _dump(self.topics_dict())

    def outline_yaml(self) -> str:
        head = (
            "# Drafted by `ensemble plan`: one section per planned topic. Each prompt is the opening of the passage\n"
            "# nearest its cluster's centre, i.e. corpus text: rewrite headings and prompts in your own words.\n"
        )
        return head + _dump(self.outline_dict())


def _dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, allow_unicode=True, sort_keys=False, width=120)


# --- pure steps -------------------------------------------------------------------------------------------------


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def overlaps(sets: dict[K, frozenset[str]]) -> dict[tuple[K, K], float]:
    return {(a, b): jaccard(sets[a], sets[b]) for a, b in itertools.combinations(sets, 2)}


def split_queries(terms: Sequence[str], queries: int) -> list[list[str]]:
    """Terms dealt round-robin into at most `queries` queries, so each mixes stronger and weaker terms."""
    n = min(queries, len(terms))
    return [list(terms[i::n]) for i in range(n)]


def opening(text: str, limit: int = PROMPT_CHARS) -> str:
    """Up to three sentences of `text` that fit in `limit` characters, from its first narrative sentence (one
    without quotation marks that goes on from no quotation: a passage may open inside a dialogue), else from
    its first."""
    sentences = [" ".join(s.split()) for s in split_sentences(text, backend="rules")]
    sentences = [s for s in sentences if s] or [" ".join(text.split())]
    start = next((i for i, s in enumerate(sentences) if not QUOTES.search(s) and not CONTINUES.match(s)), 0)
    out = [sentences[start]]
    for s in sentences[start + 1 : start + 3]:
        if len(" ".join([*out, s])) > limit:
            break
        out.append(s)
    return " ".join(out)


def culprit(
    shared: Iterable[str], terms: dict[int, list[str]], held: dict[str, frozenset[str]]
) -> tuple[int, str] | None:
    """(topic, term): of both topics' query terms, the one most of the shared passages hold."""
    counts = Counter(t for pid in shared for t in held.get(pid, ()))
    options = [(counts[t], len(terms[name]), name, t) for name in terms for t in terms[name] if counts[t]]
    if not options:
        return None
    _, _, name, term = max(options, key=lambda o: (o[0], o[1], o[2], o[3]))
    return name, term


# --- with the index ---------------------------------------------------------------------------------------------


def _theme_hits(retriever: Retriever, theme: str) -> list[Hit]:
    k = max(1, min(retriever.passage_count(), MAX_THEME_PASSAGES))
    return retriever.search("", theme=theme, k=k)


def _check_args(theme: str, topics: int, queries: int, top_k: int) -> None:
    if not theme.strip():
        raise ConfigError("the theme must not be blank: plan clusters the passages that match it", key="theme")
    for key, value in (("topics", topics), ("queries", queries), ("top_k", top_k)):
        if value < 1:
            raise ConfigError(f"must be a positive number, got {value}", key=key)


@dataclass
class _Draft:
    """A topic's working state while its queries are checked against the index."""

    pool: list[str]  # its distinctive terms not yet used, best first
    terms: list[str]  # the terms its queries hold
    words: dict[str, str]  # term -> the word written in the query

    def queries(self, n: int) -> tuple[str, ...]:
        return tuple(" ".join(self.words[t] for t in q) for q in split_queries(self.terms, n))


def _retrieve(retriever: Retriever, theme: str, queries: Sequence[str], top_k: int) -> tuple[frozenset[str], tuple]:
    hit_lists = [retriever.search(q, theme=theme, k=top_k) for q in queries]
    return frozenset(h.id for hits in hit_lists for h in hits), tuple(len(h) for h in hit_lists)


def plan_topics(
    cfg: ProjectConfig,
    theme: str,
    topics: int,
    *,
    queries: int = 3,
    top_k: int = DEFAULT_TOP_K,
    seed: int = 0,
    max_overlap: float = MAX_OVERLAP,
    progress: Progress | None = None,
) -> Plan:
    """Draft `topics` topics of `queries` queries each from the passages of the built index that match `theme`:
    clustered with `seed` (the same seed gives the same plan), named by their distinctive terms, and checked
    with the retrieval train-experts runs (`top_k` passages per query) so that no two topics' passage sets
    overlap by more than `max_overlap` (Jaccard) where another distinctive term can avoid it."""
    progress = progress or NullProgress()
    _check_args(theme, topics, queries, top_k)
    analyzer = check_name(cfg.index.analyzer, key="index.analyzer")
    retriever = open_retriever(cfg)
    try:
        return _plan(retriever, analyzer, theme, topics, queries, top_k, seed, max_overlap, progress)
    finally:
        retriever.close()


def _plan(
    retriever: Retriever,
    analyzer: str,
    theme: str,
    n_topics: int,
    n_queries: int,
    top_k: int,
    seed: int,
    max_overlap: float,
    progress: Progress,
) -> Plan:
    hits = _theme_hits(retriever, theme)
    if not hits:
        raise EnsembleError(
            f"no passage matches the theme '{theme}'; check its spelling with `ensemble search \"\" --theme "
            f"'{theme}'`, or choose a word of the corpus",
            key="theme",
        )
    surfaces: dict[str, Counter[str]] = {}
    passages = [content_terms(h.id, h.text, analyze_tokens(h.text, analyzer), analyzer, surfaces) for h in hits]
    theme_terms = set(analyze(theme, analyzer))
    passages = [PassageTerms(p.id, tuple(t for t in p.terms if t not in theme_terms)) for p in passages]
    passages = [p for p in passages if p.terms]
    if len(passages) < n_topics:
        raise EnsembleError(
            f"only {len(passages)} passages with content words match the theme '{theme}', fewer than the "
            f"{n_topics} topics asked for; ask for fewer topics or choose a broader theme",
            key="topics",
        )
    progress.log(f"{len(hits)} passages match the theme '{theme}': clustering {len(passages)} into {n_topics}")
    clusters = cluster_passages(passages, n_topics, seed)
    if clusters is None:
        raise EnsembleError(
            f"the passages matching '{theme}' share too few words to form {n_topics} topics; ask for fewer",
            key="topics",
        )
    ranked = ranked_terms(term_scores(clusters, n_topics), clusters.vocab)
    word_of = _word_finder(analyzer, surfaces)
    drafts = [_draft(pool, n_queries, word_of) for pool in ranked]
    empty = [i for i, d in enumerate(drafts) if not d.terms]
    if empty:
        raise EnsembleError(
            f"{len(empty)} of the {n_topics} clusters of '{theme}' have no distinctive words; ask for fewer topics",
            key="topics",
        )
    held = {p.id: frozenset(p.terms) for p in passages}
    sets, per_query, adjustments = _settle(
        retriever, theme, drafts, n_queries, top_k, max_overlap, held, word_of, progress
    )
    titles = [[d.words[t] for t in d.terms[:TITLE_TERMS]] for d in drafts]
    names = unique_slugs([slug(words[:2]) for words in titles])
    by_id = {h.id: h for h in hits}
    sizes = Counter(int(c) for c in clusters.labels)
    planned = tuple(
        PlannedTopic(
            name=names[i],
            title=" · ".join(titles[i]),
            queries=drafts[i].queries(n_queries),
            cluster_size=sizes[i],
            representative=passages[clusters.representative[i]].id,
            prompt=opening(by_id[passages[clusters.representative[i]].id].text),
            hits_per_query=per_query[i],
            passages=len(sets[i]),
        )
        for i in range(n_topics)
    )
    small = [f"{t.name} {t.passages} (cluster {t.cluster_size})" for t in planned if t.passages < top_k]
    if small:
        progress.log(
            f"warning: {len(small)} topics retrieve fewer distinct passages than top_k {top_k}: {', '.join(small)}; "
            "ask for fewer topics, lower top_k, or accept smaller experts"
        )
    return Plan(theme, top_k, seed, len(passages), planned, overlaps(dict(zip(names, sets, strict=True))), adjustments)


def _word_finder(analyzer: str, surfaces: dict[str, Counter[str]]) -> Callable[[str], str | None]:
    cache: dict[str, str | None] = {}

    def word_of(term: str) -> str | None:
        if term not in cache:
            cache[term] = query_word(term, surfaces.get(term, Counter()), lambda w: analyze(w, analyzer))
        return cache[term]

    return word_of


def _take(pool: list[str], word_of: Callable[[str], str | None]) -> str | None:
    """Pop the best term of `pool` that some word finds again."""
    while pool:
        term = pool.pop(0)
        if word_of(term) is not None:
            return term
    return None


def _draft(ranked: Sequence[tuple[str, float]], n_queries: int, word_of: Callable[[str], str | None]) -> _Draft:
    """The topic's query terms, best first: two per query whatever they score, a third where it scores at least
    STRONG × the topic's best (so a weak, generic word does not join a topic that has enough); the rest wait in
    the pool for replacements."""
    pool = [t for t, _ in ranked]
    floor = STRONG * ranked[0][1] if ranked else 0.0
    score = dict(ranked)
    terms: list[str] = []
    while len(terms) < n_queries * TERMS_PER_QUERY:
        term = _take(pool, word_of)
        if term is None:
            break
        if len(terms) >= n_queries * MIN_TERMS_PER_QUERY and score[term] < floor:
            pool.insert(0, term)
            break
        terms.append(term)
    return _Draft(pool, terms, {t: word_of(t) or t for t in terms})


def _settle(
    retriever: Retriever,
    theme: str,
    drafts: list[_Draft],
    n_queries: int,
    top_k: int,
    max_overlap: float,
    held: dict[str, frozenset[str]],
    word_of: Callable[[str], str | None],
    progress: Progress,
) -> tuple[list[frozenset[str]], list[tuple[int, ...]], int]:
    """Retrieve every topic; while a pair overlaps above `max_overlap`, replace the query term its shared
    passages hold most. Returns each topic's passage set, hits per query and the number of replacements."""
    found = [_retrieve(retriever, theme, d.queries(n_queries), top_k) for d in drafts]
    sets, per_query = [f[0] for f in found], [f[1] for f in found]
    stuck: set[tuple[int, int]] = set()
    adjustments = 0
    for _ in range(len(drafts) * n_queries * TERMS_PER_QUERY):
        pairs = overlaps(dict(enumerate(sets)))
        over = sorted(((j, p) for p, j in pairs.items() if j > max_overlap and p not in stuck), reverse=True)
        if not over:
            break
        j, (a, b) = over[0]
        guilty = culprit(sets[a] & sets[b], {a: drafts[a].terms, b: drafts[b].terms}, held)
        if guilty is None or not _replace(drafts[guilty[0]], guilty[1], word_of):
            stuck.add((a, b))
            continue
        i, term = guilty
        adjustments += 1
        sets[i], per_query[i] = _retrieve(retriever, theme, drafts[i].queries(n_queries), top_k)
        progress.log(
            f"topics {a + 1} and {b + 1} overlapped {j:.2f}: replaced '{drafts[i].words[term]}' in topic {i + 1} "
            f"→ {jaccard(sets[a], sets[b]):.2f}"
        )
    return sets, per_query, adjustments


def _replace(d: _Draft, term: str, word_of: Callable[[str], str | None]) -> bool:
    """Swap `term` for the next distinctive term of the topic (or drop it if others remain)."""
    new = _take(d.pool, word_of)
    if new is None and len(d.terms) == 1:
        return False
    i = d.terms.index(term)
    if new is None:
        d.terms.pop(i)
    else:
        d.terms[i] = new
        d.words[new] = word_of(new) or new
    return True
