"""What kind of failure an exception is, for the Result's reason (the runner asks)."""

from __future__ import annotations


def is_out_of_memory(error: BaseException) -> bool:
    """A torch / CUDA / host out-of-memory anywhere in the exception chain."""
    for link in _chain(error):
        if isinstance(link, MemoryError):
            return True
        if type(link).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, torch.cuda's alias
            return True
        if isinstance(link, RuntimeError) and "out of memory" in str(link).lower():
            return True
    return False


def is_missing_on_hub(error: BaseException) -> bool:
    """A repository or revision that does not exist (or is gated): a spec problem, not a retry."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    return any(isinstance(link, RepositoryNotFoundError | RevisionNotFoundError) for link in _chain(error))


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
