"""XGBoost boosters in XGBoost's own JSON model format, checked before XGBoost reads them.

XGBoost's model format holds numbers, not code, but XGBoost trusts its structure: a tree whose
child index points outside the tree, a split on feature 10**6, a ``tree_info`` naming a missing
output group or a truncated UBJSON file crashes the process (measured with XGBoost 3.2: segfaults
and heap corruption, i.e. memory a crafted file could abuse). So a booster is stored as JSON, and
:func:`booster_from_json` parses it in Python first, refuses every field it does not know and
every structure XGBoost itself would not have written — children after their parent, each node
reached exactly once, splits on real features, numerical splits only, finite numbers, a binary
logistic objective — and hands XGBoost only its own re-serialisation of the checked document, so
that two JSON parsers can never read the file differently.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.ml.artifact import ArtifactFormatError, one_line, strict_json

if TYPE_CHECKING:
    import xgboost as xgb

MAX_TREES = 10_000
MAX_NODES = 1 << 16  # per tree; depth 6 gives at most 127
_ROOT_PARENT = 2147483647  # XGBoost's "no parent"
_COUNT = re.compile(r"^[0-9]{1,9}$")
_NUMBER_TEXT = re.compile(r"^\[?([-+0-9.eE]{1,40})\]?$")
_TREE_KEYS = frozenset(
    {"base_weights", "categories", "categories_nodes", "categories_segments", "categories_sizes",
     "default_left", "id", "left_children", "loss_changes", "parents", "right_children",
     "split_conditions", "split_indices", "split_type", "sum_hessian", "tree_param"}
)  # fmt: skip
_NODE_INTS = ("left_children", "right_children", "parents", "split_indices", "split_type")
_NODE_FLOATS = ("base_weights", "loss_changes", "split_conditions", "sum_hessian")


def booster_to_json(booster: xgb.Booster) -> bytes:
    """The booster in XGBoost's JSON model format."""
    return bytes(booster.save_raw("json"))


def booster_from_json(blob: bytes, n_features: int) -> xgb.Booster:
    """A booster from :func:`booster_to_json`'s bytes, checked first; scores on one thread.

    Raises :class:`ArtifactFormatError` for anything but a binary-logistic tree model over
    ``n_features`` numerical features.
    """
    import xgboost as xgb

    try:
        doc = strict_json(blob)
    except ValueError as e:
        raise ArtifactFormatError(f"XGBoost model is not valid JSON ({e})") from e
    try:
        check_model(doc, n_features)
    except ArtifactFormatError as e:
        raise ArtifactFormatError(f"XGBoost model refused before loading: {e}") from e
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(text))
    except xgb.core.XGBoostError as e:
        raise ArtifactFormatError(f"XGBoost refused the model ({one_line(e)})") from e
    # Loading keeps no training config; one thread as in training (OpenMP thrashes on 2 cores).
    booster.set_param({"nthread": 1})
    return booster


def check_model(doc: Any, n_features: int) -> None:
    """Raise :class:`ArtifactFormatError` unless ``doc`` is a model XGBoost could have written."""
    top = _obj(doc, "model", {"learner", "version"})
    version = top["version"]
    if not (isinstance(version, list) and len(version) == 3 and all(_is_int(v) for v in version)):
        raise ArtifactFormatError("'version' must be three integers")
    learner = _obj(
        top["learner"],
        "learner",
        {"attributes", "feature_names", "feature_types", "gradient_booster",
         "learner_model_param", "objective"},
    )  # fmt: skip
    if learner["attributes"] != {} or learner["feature_names"] != []:
        raise ArtifactFormatError("attributes and feature names must be empty")
    if learner["feature_types"] != []:
        raise ArtifactFormatError("feature types must be empty (numerical features only)")
    _check_params(learner, n_features)
    booster = _obj(learner["gradient_booster"], "gradient_booster", {"model", "name"})
    if booster["name"] != "gbtree":
        raise ArtifactFormatError(f"booster {booster['name']!r} is not gbtree")
    model = _obj(
        booster["model"],
        "gradient_booster.model",
        {"gbtree_model_param", "tree_info", "trees"},
        optional={"cats", "iteration_indptr"},
    )
    trees = model["trees"]
    if not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
        raise ArtifactFormatError(f"'trees' must be a list of 1 to {MAX_TREES} trees")
    n = len(trees)
    tree_param = _obj(model["gbtree_model_param"], "gbtree_model_param",
                      {"num_parallel_tree", "num_trees"})  # fmt: skip
    if tree_param != {"num_parallel_tree": "1", "num_trees": str(n)}:
        raise ArtifactFormatError(f"gbtree_model_param {tree_param} does not match {n} trees")
    if model["tree_info"] != [0] * n:
        raise ArtifactFormatError("tree_info must name output group 0 for every tree")
    if "iteration_indptr" in model and model["iteration_indptr"] != list(range(n + 1)):
        raise ArtifactFormatError("iteration_indptr must be one tree per round")
    if "cats" in model:
        cats = _obj(model["cats"], "cats", {"enc", "feature_segments", "sorted_idx"})
        if any(v != [] for v in cats.values()):
            raise ArtifactFormatError("categorical features are not supported")
    for i, tree in enumerate(trees):
        try:
            _check_tree(tree, i, n_features)
        except ArtifactFormatError as e:
            raise ArtifactFormatError(f"tree {i}: {e}") from None


def _check_params(learner: dict[str, Any], n_features: int) -> None:
    params = _obj(
        learner["learner_model_param"],
        "learner_model_param",
        {"base_score", "num_class", "num_feature", "num_target"},
        optional={"boost_from_average"},
    )
    expected = {"num_class": "0", "num_feature": str(n_features), "num_target": "1"}
    if any(params[k] != v for k, v in expected.items()):
        raise ArtifactFormatError(f"learner_model_param must be {expected} (the feature count)")
    if params.get("boost_from_average", "1") not in ("0", "1"):
        raise ArtifactFormatError("boost_from_average must be '0' or '1'")
    base = _number_text(params["base_score"], "base_score")
    if not 0.0 < base < 1.0:
        raise ArtifactFormatError("base_score must be a probability")
    objective = _obj(learner["objective"], "objective", {"name", "reg_loss_param"})
    if objective["name"] != "binary:logistic":
        raise ArtifactFormatError(f"objective {objective['name']!r} is not binary:logistic")
    loss = _obj(objective["reg_loss_param"], "reg_loss_param", {"scale_pos_weight"})
    if not _number_text(loss["scale_pos_weight"], "scale_pos_weight") > 0.0:
        raise ArtifactFormatError("scale_pos_weight must be positive")


def _check_tree(tree: Any, index: int, n_features: int) -> None:
    tree = _obj(tree, "tree", _TREE_KEYS)
    if not _is_int(tree["id"]) or tree["id"] != index:
        raise ArtifactFormatError(f"id {tree['id']!r} is not its position")
    param = _obj(tree["tree_param"], "tree_param",
                 {"num_deleted", "num_feature", "num_nodes", "size_leaf_vector"})  # fmt: skip
    nodes = param["num_nodes"]
    if not (isinstance(nodes, str) and _COUNT.match(nodes) and 1 <= int(nodes) <= MAX_NODES):
        raise ArtifactFormatError(f"num_nodes {nodes!r} is not 1 to {MAX_NODES}")
    n = int(nodes)
    if param["num_deleted"] != "0" or param["num_feature"] != str(n_features):
        raise ArtifactFormatError("tree_param must have no deleted node and the feature count")
    if param["size_leaf_vector"] not in ("0", "1"):
        raise ArtifactFormatError("leaves must be scalars")
    if any(tree[k] != [] for k in _TREE_KEYS if k.startswith("categor")):
        raise ArtifactFormatError("categorical splits are not supported")
    ints = {k: _node_array(tree[k], k, n, integer=True) for k in (*_NODE_INTS, "default_left")}
    for k in _NODE_FLOATS:
        _node_array(tree[k], k, n, integer=False)
    if ints["split_type"].any():
        raise ArtifactFormatError("categorical splits are not supported")
    if ((ints["default_left"] != 0) & (ints["default_left"] != 1)).any():
        raise ArtifactFormatError("default_left must be 0 or 1")
    split = ints["split_indices"]
    if split.min() < 0 or split.max() >= n_features:
        raise ArtifactFormatError(f"a split uses a feature outside 0..{n_features - 1}")
    _check_structure(ints["left_children"], ints["right_children"], ints["parents"])


def _check_structure(left: np.ndarray, right: np.ndarray, parents: np.ndarray) -> None:
    """Every node is a leaf (-1, -1) or has two distinct children after it, and every node but
    the root is exactly one node's child (with that parent recorded): a tree, walkable without
    going out of bounds or round in circles."""
    n = len(left)
    idx = np.arange(n)
    leaf = left == -1
    inner = ~leaf
    if ((right == -1) != leaf).any():
        raise ArtifactFormatError("a node has one child")
    if inner.any():
        lo = np.minimum(left[inner], right[inner])
        hi = np.maximum(left[inner], right[inner])
        if (lo <= idx[inner]).any() or (hi >= n).any() or (lo == hi).any():
            raise ArtifactFormatError("a child index is out of range or not after its parent")
    children = np.sort(np.concatenate([left[inner], right[inner]]))
    if not np.array_equal(children, idx[1:]):
        raise ArtifactFormatError("the nodes do not form one tree")
    expected = np.full(n, _ROOT_PARENT, dtype=np.int64)
    expected[left[inner]] = idx[inner]
    expected[right[inner]] = idx[inner]
    if not np.array_equal(parents, expected):
        raise ArtifactFormatError("parents do not match the children")


def _obj(value: Any, what: str, keys: set[str] | frozenset[str],
         optional: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:  # fmt: skip
    if not isinstance(value, dict):
        raise ArtifactFormatError(f"{what} must be an object")
    missing = sorted(set(keys) - value.keys())
    unknown = sorted(value.keys() - set(keys) - set(optional))
    if missing or unknown:
        problem = f"lacks {missing[0]!r}" if missing else f"has unknown field {unknown[0]!r}"
        raise ArtifactFormatError(f"{what} {problem}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _node_array(values: Any, key: str, n: int, *, integer: bool) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n:
        raise ArtifactFormatError(f"{key} must list {n} nodes")
    # type() rather than isinstance: JSON true/false are bools, which are ints to isinstance.
    types = set(map(type, values))
    if integer:
        if not types <= {int}:
            raise ArtifactFormatError(f"{key} must hold integers")
        if n and (min(values) < -(1 << 31) or max(values) >= 1 << 31):
            raise ArtifactFormatError(f"{key} must hold 32-bit integers")
        return np.array(values, dtype=np.int64)
    if not types <= {int, float}:
        raise ArtifactFormatError(f"{key} must hold numbers")
    arr = np.array(values, dtype=np.float64)
    if not np.isfinite(arr).all() or (np.abs(arr) > np.finfo(np.float32).max).any():
        raise ArtifactFormatError(f"{key} must hold finite 32-bit floats")
    return arr


def _number_text(value: Any, what: str) -> float:
    """XGBoost writes some numbers as strings ('1', '[4.18E-2]')."""
    match = _NUMBER_TEXT.match(value) if isinstance(value, str) else None
    try:
        number = float(match.group(1)) if match else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ArtifactFormatError(f"{what} must be a finite number, not {value!r}")
    return number
