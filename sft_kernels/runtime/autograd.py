"""Reference backward for ops whose gradient is not hand-written: re-run the plain-PyTorch definition
under autograd and take its vector-Jacobian product. Correct for every backend's forward because
every backend computes the same function."""
import torch


def register_reference_autograd(op, reference_fn, tensor_positions):
    """`reference_fn(*inputs)` must compute the op from the op's own argument list (backend arg included)."""

    def setup_context(ctx, inputs, output):
        ctx.inputs = inputs
        ctx.save_for_backward(*[inputs[i] for i in tensor_positions])

    def backward(ctx, grad):
        saved = ctx.saved_tensors
        args = list(ctx.inputs)
        leaves = []
        for i, t in zip(tensor_positions, saved):
            if t is not None and ctx.needs_input_grad[i]:
                t = t.detach().requires_grad_(True)
                leaves.append((i, t))
            args[i] = t
        grads = [None] * len(args)
        if leaves:
            with torch.enable_grad():
                out = reference_fn(*args)
                gs = torch.autograd.grad(out, [t for _, t in leaves], grad, allow_unused=True)
            for (i, _), g in zip(leaves, gs):
                grads[i] = g
        return tuple(grads)

    op.register_autograd(backward, setup_context=setup_context)
