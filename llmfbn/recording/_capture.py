"""Capture one neuron signal at every token of a batch of texts."""

import torch

from llmfbn._utils import check_choice
from llmfbn.hooks import HookGroup, StopForward, first_tensor
from llmfbn.models import SIGNALS, locate_neurons

__all__ = ["ActivationRecorder", "pad_batch"]


def pad_batch(token_ids, pad_id):
    """Right-pad lists of token ids.

    Returns
    -------
    input_ids, attention_mask : LongTensor of shape (batch, max_len)
    """
    max_len = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), max_len), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), max_len), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


class ActivationRecorder:
    """Record ``signal`` at ``layers`` during forward passes of ``model``.

    Use it as a context manager; inside, :meth:`record` runs one batch and
    returns the activations of its real (non-pad) tokens. The forward pass
    stops right after the last recorded layer, so the LM head and any later
    layer are never computed.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    signal : {"mlp", "mlp_out", "residual"}, default "mlp"
        ``"mlp"``: input of each layer's MLP down projection, one value per
        MLP neuron. ``"mlp_out"``: the MLP block's output. ``"residual"``: the
        transformer layer's output.
    layers : sequence of int, optional
        Model layers to record, in increasing order. Default: all.
    stop_early : bool, default True
        End the forward pass after the last recorded layer.

    Attributes
    ----------
    width : int
        Values per layer and token: the grid's width.
    units : list of int64 arrays, or None
        Signal ``"mlp"`` of a pruned model: per recorded layer, the source
        unit of each of its neurons. Its activations are placed at those
        units of the source model's grid (``width`` of the source model);
        the removed neurons are 0. None otherwise.
    """

    def __init__(self, model, signal="mlp", layers=None, stop_early=True):
        check_choice(signal, SIGNALS, "signal")
        self.model = model
        self.signal = signal
        self.location = locate_neurons(model)
        n_layers = self.location.n_layers
        self.layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
        if not self.layers:
            raise ValueError("'layers' must name at least one layer. [] was provided.")
        bad = [x for x in self.layers if not 0 <= x < n_layers]
        if bad:
            raise ValueError(
                f"'layers' must lie in [0, {n_layers}) for this model. {bad} were provided."
            )
        if self.layers != sorted(set(self.layers)):
            raise ValueError(f"'layers' must be increasing and unique. {self.layers} was provided.")
        self.width = self.location.signal_width(signal)
        self.units = None
        if signal == "mlp" and self.location.pruned:
            self.units = [self.location.units[layer] for layer in self.layers]
        self._columns = {}  # (slot, device) -> LongTensor of grid units
        self.stop_early = stop_early
        self._hooks = None
        self._buffer = None
        self._filled = None

    def _grid_units(self, slot, device):
        key = (slot, device)
        if key not in self._columns:
            self._columns[key] = torch.tensor(self.units[slot].tolist(), dtype=torch.long,
                                              device=device)
        return self._columns[key]

    def _make_hook(self, slot, on, is_last):
        def store(tensor):
            batch, seq = self._buffer.shape[:2]
            # Some models (OPT) flatten (batch, seq) before the MLP. The copy
            # into the float32 buffer casts a bfloat16/float16 signal in place.
            values = tensor.reshape(batch, seq, -1)
            if self.units is None:
                self._buffer[:, :, slot, :] = values
            else:  # a pruned layer's neurons, at their source units (the rest stay 0)
                index = self._grid_units(slot, self._buffer.device)
                self._buffer[:, :, slot, :].index_copy_(2, index, values.to(self._buffer.dtype))
            self._filled[slot] = True
            if is_last and self.stop_early:
                raise StopForward

        if on == "input":
            return lambda module, args: store(first_tensor(args))
        return lambda module, args, output: store(first_tensor(output))

    def __enter__(self):
        self._hooks = HookGroup(self.model)
        try:
            for slot, layer in enumerate(self.layers):
                path, on = self.location.hook_path(self.signal, layer)
                is_last = slot == len(self.layers) - 1
                self._hooks.add(path, self._make_hook(slot, on, is_last), on=on)
        except BaseException:
            self._hooks.close()
            raise
        return self

    def __exit__(self, *exc):
        self._hooks.close()
        self._buffer = None
        return False

    def record(self, token_ids, pad_id=0, keep_on_device=False):
        """Run one batch; return each text's activations.

        The signal is stored in float32 whatever the model's dtype. On a CUDA
        device the real (non-pad) tokens are gathered on the device and copied
        to page-locked host memory asynchronously, with one synchronisation
        before they are returned; PyTorch's caching host allocator reuses that
        pinned memory for later batches once the returned tensors are freed.
        On the CPU the tensors are views of the batch buffer (no extra copy).

        Parameters
        ----------
        token_ids : list of list of int
            One list of token ids per text (no padding).
        pad_id : int
            Token id used for padding (masked out; never recorded).
        keep_on_device : bool, default False
            Return tensors on the model's device instead of the CPU (no host
            copy), for callers that reduce them there.

        Returns
        -------
        list of float32 tensors of shape (n_tokens_i, n_layers, width)
            On the CPU, or on the model's device if ``keep_on_device``.
        """
        if self._hooks is None or not len(self._hooks):
            raise RuntimeError("Use ActivationRecorder inside a `with` block.")
        input_ids, attention_mask = pad_batch(token_ids, pad_id)
        device = next(self.model.parameters()).device
        # Every slot is written by its hook (checked below): no need to zero, unless
        # a pruned model's layers fill only their neurons' units.
        self._buffer = (torch.empty if self.units is None else torch.zeros)(
            input_ids.shape + (len(self.layers), self.width), dtype=torch.float32,
            device=device,
        )
        self._filled = [False] * len(self.layers)
        with torch.inference_mode():
            try:
                self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    use_cache=False,
                )
            except StopForward:
                pass
        if not all(self._filled):
            missing = [layer for layer, ok in zip(self.layers, self._filled) if not ok]
            raise RuntimeError(f"The forward pass never reached layers {missing}.")
        buffer, self._buffer = self._buffer, None
        lengths = attention_mask.sum(dim=1).tolist()
        if not keep_on_device and device.type == "cuda":
            return list(_to_pinned_host(buffer, attention_mask).split(lengths))
        if not keep_on_device:
            buffer = buffer.cpu()  # no copy on the CPU
        return [buffer[row, :n] for row, n in enumerate(lengths)]


def _to_pinned_host(buffer, attention_mask):
    """Real tokens of a CUDA ``buffer``, copied to pinned host memory.

    Parameters
    ----------
    buffer : float32 CUDA tensor of shape (batch, max_len, n_layers, width)
    attention_mask : LongTensor of shape (batch, max_len)
        1 at real tokens; rows are right-padded.

    Returns
    -------
    float32 CPU tensor of shape (n_real_tokens, n_layers, width)
        Rows in text order, in page-locked memory.
    """
    with torch.inference_mode():
        real = buffer[attention_mask.to(buffer.device, non_blocking=True).bool()]
        host = torch.empty(real.shape, dtype=real.dtype, pin_memory=True)
        host.copy_(real, non_blocking=True)
        torch.cuda.current_stream(buffer.device).synchronize()
    return host
