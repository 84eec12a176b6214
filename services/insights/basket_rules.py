"""What sells together, as association rules: "shoppers who put A (and B) in a basket also put
C in it", with support, confidence, lift, leverage and conviction.

This extends insights.co_purchase (item × item co-baskets, a cosine score per neighbour) with
rules whose antecedent is one or two items and whose consequent is one item: what the
"often bought with" candidate source, the ranker's lift feature and the cross-sell copy need.

A basket is a shopper's session (the invoice), else the shopper's day (history.baskets_of), of
what they bought (history.positive_events). Baskets of one item hold no pair and are left
out, and so are baskets larger than `max_basket_items` (a wholesaler restocking half the
catalogue links everything with everything), as co_purchase does. Review-only data (each
review its own day-basket) gives few or no rules, and an empty BasketRules is a valid answer.

Mining is exact frequent-itemset counting up to three items with sparse matrix products
(Apriori's level-wise pruning: only frequent items are paired, only frequent pairs are
extended), not mlxtend. On the whole UCI file (17k baskets × 3.7k items) mlxtend's fpgrowth on
a sparse DataFrame (max_len=3) builds its FP-tree in Python: 30 s at support 0.005, 100 s at
0.003, 125 s plus 68 s in association_rules at 0.002. The products below take 1-2 s of CPU
for the same itemsets and metrics (tests/test_basket_rules.py checks them against mlxtend).

Metrics, over the n baskets mined (2 to max_basket_items items), for a rule A → C:
    support = baskets(A ∪ C) / n          confidence = baskets(A ∪ C) / baskets(A)
    lift = confidence / support(C)        leverage = support − support(A) · support(C)
    conviction = (1 − support(C)) / (1 − confidence)   (inf when confidence = 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from services.errors import InvalidArgument
from services.insights.co_purchase import MAX_BASKET_ITEMS, csr_block, row_entries
from services.insights.history import baskets_of, positive_events

# An itemset seen in one or two baskets is an anecdote, whatever share of a small log that is:
# in the 288 baskets of the shipped sample, a floor of 2 gives 21,685 rules (5,622 triples,
# mostly from a few large baskets), a floor of 3 gives 3,094.
MIN_RULE_BASKETS = 3
# Pairs are counted from the frequent items in blocks of this many pairs, so that the triple
# counts (pairs × items) never sit in memory all at once.
PAIR_BLOCK = 2_000
# The report's "top rules by lift" only lists rules found in at least this share of the
# baskets, and in at least REPORT_MIN_BASKETS of them: near the support threshold the highest
# lifts belong to a few dozen baskets of near-identical items, which says little about the shop.
REPORT_MIN_SUPPORT = 0.01
REPORT_MIN_BASKETS = 10
REPORT_TOP_RULES = 10
NO_ITEM = -1

# Columns of the rules table, one row per rule, what each holds.
RULE_COLUMNS: dict[str, str] = {
    "antecedent_row": "item row of the (first) antecedent item",
    "antecedent2_row": "item row of the second antecedent item, -1 for a one-item antecedent",
    "consequent_row": "item row of the consequent item",
    "antecedent_id": "item id of antecedent_row",
    "antecedent2_id": "item id of antecedent2_row, '' when absent",
    "consequent_id": "item id of consequent_row",
    "baskets": "baskets holding the antecedent and the consequent",
    "antecedent_support": "share of baskets holding the antecedent",
    "consequent_support": "share of baskets holding the consequent",
    "support": "share of baskets holding the antecedent and the consequent",
    "confidence": "share of the antecedent's baskets that hold the consequent",
    "lift": "confidence / consequent_support (1 = bought together by chance)",
    "leverage": "support − antecedent_support × consequent_support",
    "conviction": "(1 − consequent_support) / (1 − confidence); inf when confidence is 1",
}


def _empty_rules() -> pd.DataFrame:
    columns = {name: pd.Series(dtype=np.int64) for name in ("antecedent_row", "antecedent2_row", "consequent_row", "baskets")}
    columns.update({name: pd.Series(dtype=object) for name in ("antecedent_id", "antecedent2_id", "consequent_id")})
    columns.update({name: pd.Series(dtype=np.float64) for name in list(RULE_COLUMNS)[7:]})
    return pd.DataFrame(columns)[list(RULE_COLUMNS)]


@dataclass
class BasketRules:
    """The rules of a log, and the lookups serving reads from them.

    `rules` is sorted by antecedent (rows), then lift (highest first). The mining figures
    (baskets, items_in_baskets, itemsets, min_count) describe the build that mined them and
    are not stored with the table: a loaded BasketRules has them as 0 / {}."""

    rules: pd.DataFrame                  # RULE_COLUMNS
    n_items: int                         # rows of the item table the rows point into
    rules_per_item: int                  # "often bought with" list length per item
    titles: np.ndarray | None = None     # item titles by item row, for the report
    baskets: int = 0                     # baskets mined (2..max_basket_items items)
    items_in_baskets: int = 0            # distinct items in those baskets
    itemsets: dict[int, int] = field(default_factory=dict)  # frequent itemsets by length
    min_count: int = 0                   # baskets an itemset needed to be frequent

    # --- lookups (serving calls these per request: numpy over cached columns) --------------

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        rules = self.rules
        return {
            "first": rules["antecedent_row"].to_numpy(np.int64),
            "second": rules["antecedent2_row"].to_numpy(np.int64),
            "consequent": rules["consequent_row"].to_numpy(np.int64),
            "lift": rules["lift"].to_numpy(np.float64),
            "confidence": rules["confidence"].to_numpy(np.float64),
        }

    @cached_property
    def lift_matrix(self) -> sparse.csr_matrix:
        """[n_items, n_items]: lift of the one-item rule row → column (0: no rule, or a rule of
        lift ≤ 1: items bought together no more than by chance lead nowhere)."""
        columns = self._columns
        single = (columns["second"] == NO_ITEM) & (columns["lift"] > 1.0)
        return sparse.csr_matrix(
            (columns["lift"][single], (columns["first"][single], columns["consequent"][single])),
            shape=(self.n_items, self.n_items),
        )

    @cached_property
    def _often_bought_with(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions in `rules` of each item's top one-item rules (lift > 1), grouped by item:
        item row r's are positions[start[r]:start[r + 1]]."""
        columns = self._columns
        positions = np.flatnonzero((columns["second"] == NO_ITEM) & (columns["lift"] > 1.0))
        item = columns["first"][positions]  # sorted: rules are sorted by antecedent, then lift
        group_start = np.searchsorted(item, item, side="left")
        positions = positions[np.arange(len(positions)) - group_start < self.rules_per_item]
        start = np.searchsorted(columns["first"][positions], np.arange(self.n_items + 1), side="left")
        return start, positions

    def lift_to(self, source_rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """For each target item row, the highest lift of a one-item rule from any of the source
        item rows to it (0 where there is none): the ranker's "often bought with" feature and
        the candidate source's score (targets = every item row)."""
        sources = self._valid_rows(source_rows, "source_rows")
        targets = self._valid_rows(targets, "targets")
        if len(sources) == 0 or len(targets) == 0 or self.lift_matrix.nnz == 0:
            return np.zeros(len(targets))
        return self.best_lifts(sources)[targets]

    def best_lifts(self, sources: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """[n_items]: for every item row, the highest lift of a one-item rule from one of the
        `sources` (valid item rows) to it, each source's lifts multiplied by its `scale` when
        given; 0 where no rule leads. Lifts are positive, so this is the column max of those
        rows of the lift matrix, implicit zeros included."""
        which, consequent, lift = row_entries(self.lift_matrix, sources)
        if scale is not None:
            lift = lift * scale[which]
        best = np.zeros(self.n_items)
        np.maximum.at(best, consequent, lift)
        return best

    def lifts_between(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """[len(sources), len(targets)]: the lift of the one-item rule from each source to each
        target (0: none, or lift ≤ 1)."""
        return csr_block(self.lift_matrix, sources, targets)

    def for_items(self, item_rows: np.ndarray) -> pd.DataFrame:
        """"Often bought with": for each given item, its top `rules_per_item` one-item rules by
        lift (lift > 1 only), as rules rows sorted by antecedent, then lift. Consequents the
        shopper already has are not removed: the caller's ownership rules decide."""
        rows = np.unique(self._valid_rows(item_rows, "item_rows"))
        start, positions = self._often_bought_with
        chosen = [positions[start[row] : start[row + 1]] for row in rows]
        return self.rules.iloc[np.concatenate(chosen) if chosen else []].reset_index(drop=True)

    def relevant(self, basket_item_rows: np.ndarray, top: int = 3) -> pd.DataFrame:
        """The rules most relevant to a basket (e.g. the shopper's last one): every item of the
        antecedent is in the basket, the consequent is not, lift > 1. Ranked by
        lift × confidence, with a column `relevance` holding it: lift alone favours rare items
        that few of the antecedent's buyers take (high lift, confidence of a few per cent),
        confidence alone favours best-sellers that go with everything (lift near 1); the
        product asks for both. One rule per consequent (its best), `top` rules."""
        if top < 1:
            raise InvalidArgument("top", f"must be at least 1, got {top}")
        in_basket = np.zeros(self.n_items + 1, dtype=bool)  # the last slot is NO_ITEM's (-1): False
        in_basket[self._valid_rows(basket_item_rows, "basket_item_rows")] = True
        columns = self._columns
        second = columns["second"]
        chosen = np.flatnonzero(
            in_basket[columns["first"]]
            & ((second == NO_ITEM) | in_basket[second])
            & ~in_basket[columns["consequent"]]
            & (columns["lift"] > 1.0)
        )
        relevance = columns["lift"][chosen] * columns["confidence"][chosen]
        consequent = columns["consequent"][chosen]
        order = np.lexsort((second[chosen], columns["first"][chosen], consequent, -relevance))
        # The first rule of each consequent in that order is its best.
        _, first_of_consequent = np.unique(consequent[order], return_index=True)
        best = order[np.sort(first_of_consequent)][:top]
        return self.rules.iloc[chosen[best]].assign(relevance=relevance[best]).reset_index(drop=True)

    def _valid_rows(self, values: np.ndarray, name: str) -> np.ndarray:
        rows = np.asarray(values, dtype=np.int64).ravel()
        outside = (rows < 0) | (rows >= self.n_items)
        if outside.any():
            position = int(np.flatnonzero(outside)[0])
            raise InvalidArgument(
                f"{name}[{position}]", f"item row {int(rows[position])} is outside the item table (0..{self.n_items - 1})"
            )
        return rows

    # --- persistence and report ------------------------------------------------------------

    def tables(self) -> pd.DataFrame:
        """The rules as a plain table (RULE_COLUMNS), what a published build stores."""
        return self.rules.copy()

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, n_items: int, rules_per_item: int = 10, titles: np.ndarray | None = None
    ) -> "BasketRules":
        missing = [name for name in RULE_COLUMNS if name not in table.columns]
        if missing:
            raise InvalidArgument("table", f"rules table lacks columns {missing}")
        rules = table[list(RULE_COLUMNS)].reset_index(drop=True)
        rows = rules[["antecedent_row", "antecedent2_row", "consequent_row"]].to_numpy()
        if len(rules) and (rows.max() >= n_items or rows[:, [0, 2]].min() < 0):
            raise InvalidArgument("n_items", f"rules point at item rows outside 0..{n_items - 1}; the item table does not match")
        for name in ("antecedent_row", "antecedent2_row", "consequent_row", "baskets"):
            rules[name] = rules[name].astype(np.int64)
        return cls(rules=rules, n_items=int(n_items), rules_per_item=int(rules_per_item), titles=titles)

    def report(self) -> dict:
        rules = self.rules
        single = rules[rules["antecedent2_row"] == NO_ITEM]
        floor = max(REPORT_MIN_SUPPORT, REPORT_MIN_BASKETS / self.baskets) if self.baskets else REPORT_MIN_SUPPORT
        strong = rules[rules["support"] >= floor].sort_values(
            ["lift", "confidence", "antecedent_row", "antecedent2_row", "consequent_row"],
            ascending=[False, False, True, True, True],
            kind="stable",
        )
        # A → B and B → A (and the three rules of one triple) share their lift: list each set
        # of items once, in its most confident direction.
        items_of_rule = np.sort(strong[["antecedent_row", "antecedent2_row", "consequent_row"]].to_numpy(), axis=1)
        strong = strong[~pd.DataFrame(items_of_rule, index=strong.index).duplicated().to_numpy()]
        return {
            "baskets": int(self.baskets),
            "items_in_baskets": int(self.items_in_baskets),
            "min_baskets_per_itemset": int(self.min_count),
            "itemsets": {str(length): int(count) for length, count in sorted(self.itemsets.items())},
            "rules": int(len(rules)),
            "rules_one_item_antecedent": int(len(single)),
            "rules_two_item_antecedent": int(len(rules) - len(single)),
            "rules_lift_above_1": int((rules["lift"] > 1.0).sum()),
            "items_with_rules": int(single.loc[single["lift"] > 1.0, "antecedent_row"].nunique()),
            "top_rules_min_support": round(float(floor), 5),
            "top_rules_by_lift": [self._describe(rule) for rule in strong.head(REPORT_TOP_RULES).itertuples(index=False)],
        }

    def _describe(self, rule) -> dict:
        def name(row: int, item_id: str) -> str:
            return str(self.titles[row]) if self.titles is not None else str(item_id)

        antecedent = [name(rule.antecedent_row, rule.antecedent_id)]
        if rule.antecedent2_row != NO_ITEM:
            antecedent.append(name(rule.antecedent2_row, rule.antecedent2_id))
        return {
            "antecedent": antecedent,
            "consequent": name(rule.consequent_row, rule.consequent_id),
            "baskets": int(rule.baskets),
            "support": round(float(rule.support), 5),
            "confidence": round(float(rule.confidence), 4),
            "lift": round(float(rule.lift), 2),
        }


def basket_rules(
    events: pd.DataFrame,
    items: pd.DataFrame,
    min_support: float = 0.005,
    min_confidence: float = 0.1,
    rules_per_item: int = 10,
    max_basket_items: int = MAX_BASKET_ITEMS,
) -> BasketRules:
    """Association rules (one- or two-item antecedent → one item) over the baskets of `events`,
    with item rows into `items`. An itemset is frequent when it is in at least
    max(⌈min_support × baskets⌉, MIN_RULE_BASKETS) baskets; a rule is kept when its confidence
    is at least min_confidence. The settings are InsightsConfig's rules_min_support,
    rules_min_confidence and rules_per_item. On the whole UCI file a support of 0.005 (86
    baskets) gives rules to 557 items, 0.002 (35 baskets) to 1,248 (items holding 81% of the
    basket lines) in 47,508 rules."""
    if not 0 < min_support <= 1:
        raise InvalidArgument("min_support", f"must be in (0, 1], got {min_support}")
    if not 0 < min_confidence <= 1:
        raise InvalidArgument("min_confidence", f"must be in (0, 1], got {min_confidence}")
    if rules_per_item < 1:
        raise InvalidArgument("rules_per_item", f"must be at least 1, got {rules_per_item}")
    if max_basket_items < 2:
        raise InvalidArgument("max_basket_items", f"must be at least 2 (a rule needs a pair), got {max_basket_items}")
    n_items = len(items)
    item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
    titles = items["title"].astype(str).to_numpy(dtype=object) if "title" in items.columns else None
    empty = BasketRules(_empty_rules(), n_items, rules_per_item, titles)

    baskets = _basket_matrix(events, items, max_basket_items)
    n = baskets.shape[0]
    if n == 0:
        return empty
    # The epsilon keeps a product that should be whole (0.07 × 100 = 7.000000000000001) from rounding up.
    min_count = max(math.ceil(min_support * n - 1e-9), MIN_RULE_BASKETS)
    item_count = np.rint(np.asarray(baskets.sum(axis=0)).ravel()).astype(np.int64)  # exact counts, float64 metrics
    frequent = np.flatnonzero(item_count >= min_count)  # ascending: index order = row order
    on_frequent = baskets[:, frequent].tocsc()

    # Pairs (a < b in item rows) from the co-basket counts of frequent items.
    co = sparse.triu(on_frequent.T @ on_frequent, k=1).tocoo()
    keep = co.data >= min_count
    order = np.lexsort((co.col[keep], co.row[keep]))  # by (a, b): pair_baskets searches these
    pair_a, pair_b = co.row[keep][order].astype(np.int64), co.col[keep][order].astype(np.int64)
    pair_count = np.rint(co.data[keep][order]).astype(np.int64)

    # Triples (a < b < c): extend each frequent pair by the items of the baskets holding it.
    triples = [np.empty((0, 4), dtype=np.int64)]
    for start in range(0, len(pair_a), PAIR_BLOCK):
        a, b = pair_a[start : start + PAIR_BLOCK], pair_b[start : start + PAIR_BLOCK]
        holding_pair = on_frequent[:, a].multiply(on_frequent[:, b]).tocsc()
        counts = (holding_pair.T @ on_frequent).tocoo()
        keep = (counts.col > b[counts.row]) & (counts.data >= min_count)
        triples.append(np.column_stack([a[counts.row[keep]], b[counts.row[keep]], counts.col[keep], counts.data[keep]]).astype(np.int64))
    triple = np.concatenate(triples)

    counts_on_frequent = item_count[frequent]
    # Baskets of a frequent pair (x < y), looked up by its key x · F + y in the sorted keys.
    n_frequent = len(frequent)
    pair_key = pair_a * n_frequent + pair_b

    def pair_baskets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # Every pair inside a frequent triple is frequent (Apriori), so every key is found.
        return pair_count[np.searchsorted(pair_key, x * n_frequent + y)]

    # Every rule with a one-item consequent, in frequent-item indices: (first, second or -1,
    # consequent, baskets of all, baskets of the antecedent).
    t_a, t_b, t_c, t_count = triple.T
    candidates = np.concatenate(
        [
            np.column_stack([pair_a, np.full_like(pair_a, NO_ITEM), pair_b, pair_count, counts_on_frequent[pair_a]]),
            np.column_stack([pair_b, np.full_like(pair_b, NO_ITEM), pair_a, pair_count, counts_on_frequent[pair_b]]),
            np.column_stack([t_a, t_b, t_c, t_count, pair_baskets(t_a, t_b)]),
            np.column_stack([t_a, t_c, t_b, t_count, pair_baskets(t_a, t_c)]),
            np.column_stack([t_b, t_c, t_a, t_count, pair_baskets(t_b, t_c)]),
        ]
    ).astype(np.int64)
    first, second, consequent, together, antecedent = candidates.T
    first_row = frequent[first]
    second_row = np.where(second == NO_ITEM, NO_ITEM, frequent[np.maximum(second, 0)])
    consequent_row = frequent[consequent]

    support = together / n
    antecedent_support = antecedent / n
    consequent_support = item_count[consequent_row] / n
    confidence = together / antecedent
    lift = confidence / consequent_support
    leverage = support - antecedent_support * consequent_support
    with np.errstate(divide="ignore"):
        conviction = np.where(confidence < 1.0, (1.0 - consequent_support) / np.maximum(1.0 - confidence, 0.0), np.inf)
    rules = pd.DataFrame(
        {
            "antecedent_row": first_row,
            "antecedent2_row": second_row,
            "consequent_row": consequent_row,
            "antecedent_id": item_ids[first_row],
            "antecedent2_id": np.where(second_row == NO_ITEM, "", item_ids[np.maximum(second_row, 0)]).astype(object),
            "consequent_id": item_ids[consequent_row],
            "baskets": together,
            "antecedent_support": antecedent_support,
            "consequent_support": consequent_support,
            "support": support,
            "confidence": confidence,
            "lift": lift,
            "leverage": leverage,
            "conviction": conviction,
        }
    )
    rules = rules[rules["confidence"] >= min_confidence - 1e-12]
    rules = rules.sort_values(
        ["antecedent_row", "antecedent2_row", "lift", "consequent_row"], ascending=[True, True, False, True], kind="stable"
    ).reset_index(drop=True)
    itemsets = {1: int(len(frequent)), 2: int(len(pair_a)), 3: int(len(triple))}
    return BasketRules(
        rules=rules,
        n_items=n_items,
        rules_per_item=rules_per_item,
        titles=titles,
        baskets=n,
        items_in_baskets=int((item_count > 0).sum()),
        itemsets={length: count for length, count in itemsets.items() if count},
        min_count=min_count,
    )


def _basket_matrix(events: pd.DataFrame, items: pd.DataFrame, max_basket_items: int) -> sparse.csr_matrix:
    """[baskets, items] 0/1 (float32): the baskets of 2..max_basket_items distinct known items."""
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str).to_numpy())
    bought = positive_events(events)
    if len(bought) == 0:
        return sparse.csr_matrix((0, len(items)), dtype=np.float32)
    # A basket is (shopper, session or day); grouping the two keys numbers them without
    # building 400k concatenated strings.
    basket = pd.DataFrame({"user": bought["user_id"].to_numpy(), "basket": baskets_of(bought).to_numpy()})
    lines = pd.DataFrame(
        {
            "basket": basket.groupby(["user", "basket"], sort=False).ngroup().to_numpy(),
            "i": item_row.reindex(bought["item_id"].astype(str).to_numpy()).to_numpy(),
        }
    ).dropna().astype(np.int64).drop_duplicates()
    sizes = lines.groupby("basket")["i"].transform("size")
    lines = lines[(sizes > 1) & (sizes <= max_basket_items)]
    codes, uniques = pd.factorize(lines["basket"])
    return sparse.csr_matrix(
        (np.ones(len(lines), dtype=np.float32), (codes, lines["i"].to_numpy())), shape=(len(uniques), len(items))
    )
