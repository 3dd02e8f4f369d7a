"""golfmodel: the pure library (data formats, tokenisers, model, quantiser, Q2BN, trainer, evaluator). No Prefect, no pydantic."""
