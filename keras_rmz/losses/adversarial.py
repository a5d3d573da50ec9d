"""Least-squares GAN losses of the paper (Eq. 7 and 10)."""

from keras import ops


def generator_adversarial_loss(d_fake):
    """Generator's adversarial term `mean((D(y_hat) - 1)^2)` (Eq. 7).

    Least-squares GAN: the generator is rewarded when the discriminator
    scores its output as real (1). The paper weights this term by
    gamma = 0.5 in the total generator loss; the weight is applied by the
    caller (the trainer), not here.

    Args:
        d_fake: discriminator outputs on generated images, any shape
            (e.g. `(B, 1)` or a patch map `(B, h, w, 1)`).

    Returns:
        A scalar: the mean over all elements.

    Example:

    >>> generator_adversarial_loss(np.array([[0.5], [1.0]]))   # 0.125
    """
    d_fake = ops.convert_to_tensor(d_fake)
    return ops.mean(ops.square(d_fake - 1.0))


def discriminator_loss(d_real, d_fake):
    """Discriminator loss `1/2 D(y_hat)^2 + 1/2 (D(y) - 1)^2` (Eq. 10).

    Least-squares GAN: real images are pushed to 1, generated ones to 0.

    Args:
        d_real: discriminator outputs on ground-truth images `y`.
        d_fake: discriminator outputs on generated images `y_hat` (any
            shape; each term is averaged over its own elements).

    Returns:
        A scalar: `0.5 * mean(d_fake^2) + 0.5 * mean((d_real - 1)^2)`.

    Example:

    >>> discriminator_loss(np.array([[1.0]]), np.array([[0.0]]))   # 0.0
    """
    d_real = ops.convert_to_tensor(d_real)
    d_fake = ops.convert_to_tensor(d_fake)
    return 0.5 * ops.mean(ops.square(d_fake)) + 0.5 * ops.mean(
        ops.square(d_real - 1.0)
    )
