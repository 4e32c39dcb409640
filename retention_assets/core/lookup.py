"""Aligning per-customer aggregates to the universe's customer order."""

import pandas as pd


def per_customer(values: pd.Series, ids: pd.Series) -> pd.Series:
    """`values` (indexed by customer_id) in the order of `ids`, NA where a customer has none.

    reindex keeps the dtype even when `values` is empty, which `Series.map` does not.
    """
    return pd.Series(values.reindex(ids.to_numpy()).to_numpy(), index=ids.index)
