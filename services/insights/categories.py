"""The category of every item: the shop's own where the catalog has them, else derived from
item text (K-means over the item vectors, each cluster named by its characteristic title
words), with ids that stay the same from build to build.

Ids:
- shop categories: "s-" + the first 10 hex digits of the SHA-1 of the category path
  ("Gift Cards > Gift Cards"), so the same path has the same id in every build;
- derived categories: a cluster that matches one of the previous build's (cosine of the
  centroids ≥ MATCH_MIN_SIMILARITY, one-to-one by linear_sum_assignment) keeps its id; any
  other gets "d-" + a slug of its name ("d-christmas-tree"), with "-2", "-3"... when that id is
  already taken in this build or was used by the previous one, so an id never changes meaning.
  Without a previous table ids are still deterministic: same items, vectors and seed, same ids.

`text_terms` is the one tokeniser for catalog and shopper text (profiles use it too): jieba
for runs of CJK characters, letters-only words of 3+ characters otherwise, stop words out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from threadpoolctl import threadpool_limits

from services.errors import TailorError

# The shop's own categories are used when at least this share of the items carry one.
SHOP_CATEGORY_MIN_SHARE = 0.5
# Derived categories: about √(items / 2) clusters, clamped to this range.
DERIVED_RANGE = (8, 40)
KMEANS_RESTARTS = 4
ITEMS_PER_THREAD = 20_000
# A new cluster keeps a previous build's id when their centroids are at least this close
# (cosine). On UCI, a warm-started re-fit with 5% (30%) of the items dropped leaves every
# cluster ≥ 0.99 (≥ 0.97) from its previous centroid; two cold fits pair different clusters
# at up to 0.94.
MATCH_MIN_SIMILARITY = 0.95
NAME_TERMS = 2
TABLE_COLUMNS = ("category_id", "name", "name_zh", "terms", "items", "source", "centroid")

# Words that describe packaging, size or assortment, not what the item is.
PACKAGING_WORDS = frozenset(
    {"set", "sets", "pack", "packs", "box", "small", "large", "medium", "mini", "jumbo", "big", "tiny",
     "assorted", "asst", "design", "designs", "piece", "pieces", "pcs", "size", "new", "vintage", "gift",
     "of", "and", "with", "colour", "colours", "color", "colors", "style", "edition", "version", "old",
     "classic", "item", "items", "product", "products", "dozen", "pair", "pairs", "inch", "inches",
     "ounce", "ounces", "count", "lot", "bundle"}
)
# Colours make poor category names ("pink · handbag"); they stay usable as shopper tags.
COLOUR_WORDS = frozenset(
    {"red", "blue", "green", "pink", "white", "black", "yellow", "purple", "orange", "brown", "grey",
     "gray", "ivory", "gold", "silver", "cream", "natural", "pastel", "colour", "colored", "coloured"}
)
# A short list of Chinese function words and fillers that jieba leaves as words.
CHINESE_STOP_WORDS = frozenset(
    {"的", "了", "和", "是", "就", "都", "而", "及", "与", "着", "或", "一个", "没有", "我们", "你们", "他们",
     "我", "你", "他", "她", "它", "这", "那", "这个", "那个", "这款", "这些", "那些", "这种", "非常", "很",
     "也", "还", "又", "在", "有", "被", "把", "给", "让", "对", "从", "到", "但", "但是", "因为", "所以",
     "如果", "虽然", "可以", "已经", "还是", "就是", "不是", "什么", "怎么", "一下", "一些", "一样", "比较",
     "真的", "感觉", "觉得", "东西", "效果", "然后", "自己", "时候", "以后", "之后", "还有", "特别", "十分",
     "挺", "太", "更", "最", "啊", "吧", "呢", "吗", "哦", "呀", "嗯", "么", "个", "次", "下", "上", "不错",
     "好", "好用", "很好", "不", "没", "买", "购买", "收到", "商品", "宝贝", "卖家", "东东", "一直", "一次"}
)
# Opinion and delivery words of review text: how the shopper felt, not what they like.
REVIEW_WORDS = frozenset(
    {"great", "good", "nice", "excellent", "awesome", "perfect", "happy", "easy", "fast", "quick", "quickly",
     "works", "worked", "work", "needed", "recommend", "recommended", "bought", "buy", "purchase", "purchased",
     "received", "arrived", "delivered", "delivery", "shipping", "seller", "price", "value", "thanks", "thank",
     "really", "just", "like", "liked", "use", "used", "using", "time", "star", "stars", "best", "better",
     "product", "ordered", "order", "expected", "wonderful", "amazing", "fine", "okay", "pleased", "satisfied"}
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | PACKAGING_WORDS | REVIEW_WORDS | CHINESE_STOP_WORDS

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W\d_]{3,}")


def text_terms(text: str) -> list[str]:
    """The words of one text: jieba over CJK runs (words of 2+ characters), lower-cased
    letters-only words of 3+ characters elsewhere; STOP_WORDS (English and Chinese function
    words, packaging and size words, review opinion words) out."""
    if not text:
        return []
    terms: list[str] = []
    rest = text
    if _CJK_RUN.search(text):
        for run in _CJK_RUN.findall(text):
            terms.extend(w for w in _jieba().lcut(run) if len(w) >= 2 and w not in STOP_WORDS)
        rest = _CJK_RUN.sub(" ", text)
    terms.extend(w for w in _WORD.findall(rest.lower()) if w not in STOP_WORDS and not _CJK_RUN.search(w))
    return terms


def _jieba():
    import jieba  # loads its dictionary on first use (~1 s): only for text that needs it

    jieba.setLogLevel(logging.WARNING)
    return jieba


def term_matrix(texts: pd.Series | np.ndarray | list[str]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Binary text × term matrix over text_terms, plural forms folded into the singular
    ("candles" → "candle") where both occur, and the vocabulary (column order)."""
    texts = [str(t) for t in texts]
    vectorizer = CountVectorizer(analyzer=text_terms, binary=True)
    try:
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no words at all
        return sparse.csr_matrix((len(texts), 0)), np.array([], dtype=object)
    vocabulary = vectorizer.get_feature_names_out().astype(object)
    position = {term: i for i, term in enumerate(vocabulary)}
    target = np.array(
        [position.get(term[:-1], i) if term.endswith("s") and len(term) > 3 else i for i, term in enumerate(vocabulary)]
    )
    if (target == np.arange(len(vocabulary))).all():
        return matrix, vocabulary
    kept = np.unique(target)
    fold = sparse.csr_matrix(
        (np.ones(len(target)), (np.arange(len(target)), np.searchsorted(kept, target))), shape=(len(target), len(kept))
    )
    folded = (matrix @ fold).tocsr()
    folded.data[:] = 1.0
    return folded, vocabulary[kept]


@dataclass
class ItemCategories:
    item_category: np.ndarray   # str category_id per item row (aligned with the items table)
    table: pd.DataFrame         # TABLE_COLUMNS, one row per category, largest first
    source: str                 # "shop" (the catalog's own) or "derived" (clusters of item vectors)
    filled_by_vector: int       # shop: items with a blank category given the nearest category's
    persisted: int              # derived: ids carried over from the previous build's table
    retired: int                # derived: previous ids no cluster matched (never reused)

    def names(self) -> pd.Series:
        """category_id → name."""
        return self.table.set_index("category_id")["name"]

    def report(self) -> dict:
        sizes = self.table["items"]
        return {
            "source": self.source,
            "categories": int(len(self.table)),
            "largest": int(sizes.max()) if len(sizes) else 0,
            "smallest": int(sizes.min()) if len(sizes) else 0,
            "filled_by_vector": int(self.filled_by_vector),
            "persisted_ids": int(self.persisted),
            "retired_ids": int(self.retired),
            "names": {row.category_id: row.name for row in self.table.head(40).itertuples()},
        }


def item_categories(
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    n_categories: int | None = None,
    previous: pd.DataFrame | None = None,
    seed: int = 0,
) -> ItemCategories:
    """Every item's category: the shop's own when at least SHOP_CATEGORY_MIN_SHARE of the items
    have one (blank ones get the nearest category by centroid), else `n_categories` (default
    ≈ √(items / 2) in DERIVED_RANGE) K-means clusters of `item_vectors` named by their titles.
    `previous`: the previous build's table, whose derived ids are carried over (module doc)."""
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(items):
        raise TailorError(f"item categories: {len(items)} items but item vectors of shape {vectors.shape}")
    titles = items["title"].fillna("").astype(str) if "title" in items else pd.Series([""] * len(items))
    if len(items) == 0:
        return ItemCategories(np.array([], dtype=object), _table([]), "derived", 0, 0, 0)
    path = items["category"].fillna("").astype(str).map(_clean_path) if "category" in items else pd.Series([""] * len(items))
    if (path != "").mean() >= SHOP_CATEGORY_MIN_SHARE:
        return _shop_categories(path.to_numpy(dtype=object), titles, vectors)
    return _derived_categories(titles, vectors, n_categories, previous, seed)


def _clean_path(path: str) -> str:
    return " > ".join(part.strip() for part in path.split(">") if part.strip())


def _shop_categories(path: np.ndarray, titles: pd.Series, vectors: np.ndarray) -> ItemCategories:
    paths = np.unique(path[path != ""])
    code = np.searchsorted(paths, path)
    blank = path == ""
    centroids = _centroids(vectors[~blank], code[~blank], len(paths))
    if blank.any():  # the category whose centroid is closest to the item's vector
        code[blank] = np.argmax(vectors[blank] @ centroids.T, axis=1)
    ids = np.array(["s-" + hashlib.sha1(p.encode("utf-8")).hexdigest()[:10] for p in paths], dtype=object)
    terms = _cluster_terms(titles, code, len(paths))
    rows = [
        {"category_id": ids[c], "name": name, "terms": terms[c][:5], "items": int((code == c).sum()), "source": "shop",
         "centroid": centroids[c]}
        for c, name in enumerate(_leaf_names(paths))
    ]
    return ItemCategories(ids[code], _table(rows), "shop", int(blank.sum()), 0, 0)


def _leaf_names(paths: np.ndarray) -> list[str]:
    """The last level of each path; with as many levels above it as make it unique."""
    parts = [p.split(" > ") for p in paths]
    depth = [1] * len(parts)
    while True:
        names = [" > ".join(p[-d:]) for p, d in zip(parts, depth)]
        seen = pd.Series(names).duplicated(keep=False).to_numpy()
        grow = [i for i in np.flatnonzero(seen) if depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def _derived_categories(
    titles: pd.Series, vectors: np.ndarray, n_categories: int | None, previous: pd.DataFrame | None, seed: int
) -> ItemCategories:
    n_items = len(vectors)
    old = _previous_derived(previous, vectors.shape[1])
    k = n_categories or int(np.clip(round(np.sqrt(n_items / 2)), *DERIVED_RANGE))
    if n_categories is None and len(old) and abs(len(old) - k) <= 0.25 * k:
        k = len(old)  # a catalog that changed a little keeps its number of categories
    distinct = len(np.unique(vectors, axis=0))
    k = max(1, min(k, distinct))  # K-means cannot make more clusters than distinct points
    if len(old) == k:
        # Start from the previous build's centroids: clusters move with the data instead of
        # being re-drawn (a fresh K-means on 95% of UCI's items keeps only ~55% of the items
        # in a matching cluster; a warm start keeps over 90%).
        model = KMeans(k, init=np.array(old["centroid"].tolist(), dtype=vectors.dtype), n_init=1, random_state=seed)
    else:
        model = KMeans(k, n_init=KMEANS_RESTARTS, random_state=seed)
    # One thread per ITEMS_PER_THREAD items: on a small catalog OpenMP's start-up and spinning
    # cost more than the work (UCI's 3.7k items: 1.6 s on one thread, 22 s on two busy cores).
    with threadpool_limits(limits=max(1, min(os.cpu_count() or 1, n_items // ITEMS_PER_THREAD))):
        labels = model.fit_predict(vectors)
    labels = np.unique(labels, return_inverse=True)[1].reshape(-1)
    k = int(labels.max()) + 1
    centroids = _centroids(vectors, labels, k)
    terms = _cluster_terms(titles, labels, k, leave_out=COLOUR_WORDS)

    ids: list[str | None] = [None] * k
    kept_names: dict[int, str] = {}
    if len(old):
        similarity = centroids @ _normalised(np.array(old["centroid"].tolist(), dtype=np.float64)).T
        new_rows, old_rows = linear_sum_assignment(-similarity)
        for new, old_row in zip(new_rows, old_rows):
            if similarity[new, old_row] >= MATCH_MIN_SIMILARITY:
                ids[new] = str(old["category_id"].iloc[old_row])
                old_name = str(old["name"].iloc[old_row])
                # The name stays while its words still characterise the cluster.
                if set(old_name.replace(" · ", " ").split()) <= set(terms[new][:5]):
                    kept_names[new] = old_name
    persisted = sum(i is not None for i in ids)
    retired = len(old) - persisted
    names = _unique_names(terms, np.bincount(labels, minlength=k), titles, labels, kept_names)
    taken = set(previous["category_id"].astype(str)) if previous is not None and len(previous) else set()
    taken |= {i for i in ids if i}
    for c in np.argsort(names, kind="stable"):  # fresh ids in name order: deterministic
        if ids[c] is None:
            ids[c] = _fresh_id("d-" + _slug(names[c]), taken)
            taken.add(ids[c])
    id_array = np.array(ids, dtype=object)
    rows = [
        {"category_id": ids[c], "name": names[c], "terms": terms[c][:5], "items": int((labels == c).sum()),
         "source": "derived", "centroid": centroids[c]}
        for c in range(k)
    ]
    return ItemCategories(id_array[labels], _table(rows), "derived", 0, persisted, retired)


def _previous_derived(previous: pd.DataFrame | None, dimension: int) -> pd.DataFrame:
    """The previous build's derived categories, if their centroids fit these vectors."""
    if previous is None or not len(previous) or "centroid" not in previous:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    old = previous[previous["source"] == "derived"] if "source" in previous else previous
    fits = old["centroid"].map(lambda c: c is not None and len(c) == dimension)
    return old[fits].reset_index(drop=True)


def _centroids(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """L2-normalised mean vector of each label (zero for a label without members)."""
    members = sparse.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    return _normalised(np.asarray(members @ vectors.astype(np.float64)))


def _normalised(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix, dtype=np.float64), where=norms > 0)


def _cluster_terms(titles: pd.Series, labels: np.ndarray, k: int, leave_out: frozenset[str] = frozenset()) -> list[list[str]]:
    """Each cluster's title words by c-TF-IDF: the share of its titles holding the word times
    log(1 + k / clusters holding it), so words common to every cluster rank low."""
    matrix, vocabulary = term_matrix(titles)
    if not len(vocabulary):
        return [[] for _ in range(k)]
    members = sparse.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    counts = np.asarray((members @ matrix).todense())
    share = counts / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    idf = np.log1p(k / (1.0 + (counts > 0).sum(axis=0)))
    score = share * idf
    score[:, np.isin(vocabulary, list(leave_out))] = 0.0
    # A word in one title of a larger cluster says nothing about the cluster.
    score[counts < np.minimum(2, np.bincount(labels, minlength=k))[:, None]] = 0.0
    order = np.argsort(-score, axis=1, kind="stable")[:, :10]
    ranked: list[list[str]] = []
    for c, row in enumerate(order):
        words: list[str] = []
        for term in (str(vocabulary[j]) for j in row if score[c, j] > 0):
            if not any(term.startswith(w) or w.startswith(term) for w in words):  # "mirror", "mirrored"
                words.append(term)
        ranked.append(words[:8])
    return ranked


def _unique_names(
    terms: list[list[str]], sizes: np.ndarray, titles: pd.Series, labels: np.ndarray, kept: dict[int, str]
) -> list[str]:
    """Each cluster's top NAME_TERMS words, as a phrase when its titles say them side by side
    ("christmas tree", "photo frame"), else joined by " · " ("heart · decoration"); `kept`
    names (cluster → its previous name) first, then the larger cluster first to a name; a
    clash takes one more word, then a number."""
    names: list[str] = [kept.get(c, "") for c in range(len(terms))]
    used: set[str] = set(kept.values())
    for c in np.lexsort((np.arange(len(sizes)), -sizes)):
        if c in kept:
            continue
        words = terms[c] or ["other"]
        candidates = [_phrase(words[:NAME_TERMS], titles[labels == c])] if len(words) >= NAME_TERMS else [words[0]]
        candidates += [" · ".join(words[:width]) for width in range(NAME_TERMS + 1, len(words) + 1)]
        name = next((n for n in candidates if n not in used), candidates[0])
        base, n = name, 2
        while name in used:
            name, n = f"{base} {n}", n + 1
        names[c] = name
        used.add(name)
    return names


def _phrase(words: list[str], titles: pd.Series) -> str:
    """"a b" or "b a" when that is how at least a quarter of the titles holding both words
    put them (plural forms count as the word), else "a · b"."""
    first, second = words
    together = {(first, second): 0, (second, first): 0}
    both = 0
    for title in titles:
        tokens = [t[:-1] if t.endswith("s") and t[:-1] in (first, second) else t for t in text_terms(title)]
        if first in tokens and second in tokens:
            both += 1
            for pair in zip(tokens, tokens[1:]):
                if pair in together:
                    together[pair] += 1
    order, count = max(together.items(), key=lambda kv: kv[1])
    if count >= 2 and count >= 0.25 * both:
        return " ".join(order)
    return " · ".join(words)


def _slug(name: str) -> str:
    slug = re.sub(r"[^\w]+", "-", name.lower(), flags=re.UNICODE).strip("-")
    return slug[:40].strip("-") or "category"


def _fresh_id(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "name_zh"])
    table.insert(2, "name_zh", "")  # a bilingual vocabulary fills this later
    table["centroid"] = [np.asarray(c, dtype=np.float32).round(6).tolist() for c in table["centroid"]]
    table["items"] = table["items"].astype(np.int64)
    return table.sort_values(["items", "name"], ascending=[False, True], kind="stable").reset_index(drop=True)
