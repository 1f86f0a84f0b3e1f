"""The house-style check every figure test shares: a Figure with a title, a one-line takeaway and
labelled axes (colour bars excepted)."""

from matplotlib.figure import Figure


def check_figure(fig) -> None:
    assert isinstance(fig, Figure)
    assert fig.get_suptitle().strip(), "every figure has a title"
    assert fig.get_supxlabel().strip(), "every figure has a one-line takeaway"
    plot_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert plot_axes
    for ax in plot_axes:
        assert ax.get_xlabel().strip(), f"unlabelled x axis in {ax.get_title()!r}"
        assert ax.get_ylabel().strip(), f"unlabelled y axis in {ax.get_title()!r}"
