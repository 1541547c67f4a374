"""The algorithms: the papers' mathematics, readable and tested.

This layer imports nothing from :mod:`winning_ticket.experiments` except seeding,
validation and progress bars, and nothing from :mod:`winning_ticket.chapters`.

- :mod:`~.teacher_student`: the sparse teacher-student model (1) and its data.
- :mod:`~.risk`: empirical risk (2), its gradient and Hessian (numpy reference).
- :mod:`~.agd`: Algorithm 1, accelerated gradient descent (numpy reference).
- :mod:`~.engine`: the batched torch engine (CPU or GPU), tested against the reference.
- :mod:`~.kernels`: the engine's fused one-pass CPU gradient kernel and AGD step (numba).
- :mod:`~.pooling`: LeNet-5's max pooling and ReLU in one compiled pass (numba).
- :mod:`~.rates`: convergence-rate estimation.
- :mod:`~.tensor_init`: the tensor initialization of Lemma 1.
- :mod:`~.pruning`: magnitude pruning and iterative magnitude pruning (IMP).
- :mod:`~.matrix_sensing`: matrix sensing, group Lasso and greedy pruning (Rajaraman et al.).
- :mod:`~.subset_sum`: subset sum and strong lottery tickets (Pensia et al.).
- :mod:`~.networks`: torch networks (LeNet-5, bias-free MLP), training, weight cache.
- :mod:`~.stacked_lenet`: many LeNet-5 networks trained as one computation (IMP on MNIST).
- :mod:`~.mnist`: the MNIST IDX loader with checksums.
"""
