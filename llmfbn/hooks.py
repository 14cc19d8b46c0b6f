"""One small primitive for recording and editing: a group of torch hooks.

:class:`HookGroup` registers forward hooks on modules named by their dotted
``named_modules()`` path and removes every handle, in reverse order, when the
``with`` block exits, whatever happens inside it. Groups nest: an inner group
removes only its own hooks.
"""

import torch

__all__ = ["HookGroup", "StopForward", "active_hook_count"]


class StopForward(Exception):
    """Raised from a hook to end a forward pass early (nothing after is needed)."""


class HookGroup:
    """Context manager owning a set of forward hooks on one model.

    Parameters
    ----------
    model : torch.nn.Module

    Examples
    --------
    >>> with HookGroup(model) as hooks:                       # doctest: +SKIP
    ...     hooks.add("model.layers.0.mlp.down_proj", fn, on="input")
    ...     model(ids)
    """

    def __init__(self, model):
        self.model = model
        self._handles = []

    def add(self, path, fn, on="output"):
        """Register ``fn`` on the module at ``path``.

        Parameters
        ----------
        path : str
            Dotted module path, as in ``model.named_modules()``.
        fn : callable
            ``on="input"``: ``fn(module, args)``, may return new args (a forward
            pre-hook). ``on="output"``: ``fn(module, args, output)``, may
            return a new output.
        on : {"input", "output"}
        """
        try:
            module = self.model.get_submodule(path)
        except AttributeError as err:
            raise ValueError(f"The model has no module {path!r}.") from err
        if on == "input":
            handle = module.register_forward_pre_hook(fn)
        elif on == "output":
            handle = module.register_forward_hook(fn)
        else:
            raise ValueError(f"'on' must be one of ('input', 'output'). {on!r} was provided.")
        self._handles.append(handle)
        return handle

    def close(self):
        """Remove every hook of this group, last added first."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return len(self._handles)


def active_hook_count(model):
    """Number of forward and pre-forward hooks on all modules of ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
    )


def first_tensor(value):
    """The hidden-state tensor of a module's args or output (tuple or tensor)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"Expected a tensor or a tuple starting with one, got {type(value).__name__}.")
