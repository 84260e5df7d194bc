"""A model's output as the flat list of what it holds: tensors within dicts, lists and tuples (namedtuples too), in
order, dict values in insertion order: the order torch.onnx gives an exported model's outputs."""


def leaves(out) -> list:
    """Every leaf of `out` (anything not a dict, list or tuple), depth first."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [leaf for o in out for leaf in leaves(o)]
    return [out]
