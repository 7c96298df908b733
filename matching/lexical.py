"""The lexical channel: TF-IDF over Chinese character n-grams (scikit-learn)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from policies.schema import Policy

_SPACE = re.compile(r"\s+")


def policy_document(policy: Policy, *, drop_questions: tuple[int, ...] = ()) -> str:
    """The text an entry is found by: title (weighted), summary, tags, triggers, benefit (policies only),
    常见问法 and the plan's wording. ``drop_questions`` leaves those 常见问法 out (the calibration's
    leave-one-out training)."""
    questions = [q for n, q in enumerate(policy.questions) if n not in drop_questions]
    benefit = policy.benefit.description if policy.benefit is not None else ""
    parts = [policy.title, policy.title, policy.summary, " ".join(policy.tags),
             " ".join(policy.triggers), benefit, " ".join(questions), policy.text]
    return _SPACE.sub(" ", " ".join(parts))


@dataclass
class LexicalIndex:
    """Character 1–3-gram TF-IDF; ``scores`` returns cosine similarity per document."""

    ids: list[str]
    vectorizer: TfidfVectorizer
    matrix: object  # scipy sparse, rows L2-normalised

    @classmethod
    def build(cls, ids: Sequence[str], documents: Sequence[str]) -> LexicalIndex:
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True,
                                     min_df=1, lowercase=True)
        matrix = vectorizer.fit_transform(documents)
        return cls(list(ids), vectorizer, matrix)

    @classmethod
    def for_policies(cls, policies: Sequence[Policy]) -> LexicalIndex:
        return cls.build([p.id for p in policies], [policy_document(p) for p in policies])

    def scores(self, text: str) -> np.ndarray:
        if not text.strip():
            return np.zeros(len(self.ids))
        q = self.vectorizer.transform([text])
        return np.asarray((self.matrix @ q.T).toarray()).ravel()  # type: ignore[operator]

    def search(self, text: str, top: int | None = None) -> list[tuple[str, float]]:
        """Ids ranked by similarity (ties by id), zero scores dropped."""
        scores = self.scores(text)
        order = sorted(range(len(self.ids)), key=lambda i: (-scores[i], self.ids[i]))
        hits = [(self.ids[i], float(scores[i])) for i in order if scores[i] > 0]
        return hits[:top] if top else hits
