import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import MultiNiftiMasker, NiftiMasker

from llmfbn.grid import NeuronGrid, slice_shape
from llmfbn.io import read_grid, write_grid


def test_slice_shape_smollm2():
    assert slice_shape(1536) == (48, 32)


@pytest.mark.parametrize("width", list(range(1, 300)) + [1531, 1536, 3072, 4096, 11008])
def test_slice_shape_covers_width_near_square(width):
    nx, ny = slice_shape(width)
    assert nx >= ny >= 1
    assert nx * ny >= width
    if nx * ny == width:
        assert nx / ny <= 2
    else:  # padded: near-square, less than one row of padding
        assert nx - ny <= 1
        assert nx * ny - width < nx


def test_slice_shape_pads_prime_width():
    nx, ny = slice_shape(1531)
    assert nx * ny > 1531 and nx - ny <= 1


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_slice_shape_rejects_bad_width(bad, error):
    with pytest.raises(error, match="'width'"):
        slice_shape(bad)


@pytest.mark.parametrize("width", [1536, 1531, 24, 7, 1])
def test_round_trip_4d(width):
    grid = NeuronGrid(n_layers=3, width=width)
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((5, 3, width)).astype(np.float32)
    img = grid.to_img(acts)
    assert img.shape == grid.shape + (5,)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(grid.from_img(img), acts)


@pytest.mark.parametrize("width", [1536, 1531])
def test_round_trip_3d_map(width):
    grid = NeuronGrid(n_layers=2, width=width)
    values = np.arange(2 * width, dtype=np.float32).reshape(2, width)
    img = grid.to_img(values)
    assert img.shape == grid.shape
    np.testing.assert_array_equal(grid.from_img(img), values)


def test_round_trip_through_disk(tmp_path):
    grid = NeuronGrid(n_layers=4, width=1531)
    acts = np.random.default_rng(1).standard_normal((6, 4, 1531)).astype(np.float32)
    nib.save(grid.to_img(acts), tmp_path / "bold.nii")
    np.testing.assert_array_equal(grid.from_img(tmp_path / "bold.nii"), acts)


def test_voxel_mapping_is_exact_and_invertible():
    grid = NeuronGrid(n_layers=3, width=1531)
    layer, unit = np.meshgrid(np.arange(3), np.arange(1531), indexing="ij")
    i, j, k = grid.voxel_of(layer, unit)
    voxels = set(zip(i.ravel(), j.ravel(), k.ravel()))
    assert len(voxels) == 3 * 1531  # injective
    back_layer, back_unit = grid.neuron_of(i, j, k)
    np.testing.assert_array_equal(back_layer, layer)
    np.testing.assert_array_equal(back_unit, unit)
    assert grid.mask()[i, j, k].all()


def test_voxel_layout_rule():
    grid = NeuronGrid(n_layers=30, width=1536)
    assert grid.voxel_of(7, 0) == (0, 0, 7)
    assert grid.voxel_of(7, 49) == (1, 1, 7)  # x = u % 48, y = u // 48
    data = np.zeros((30, 1536), np.float32)
    data[7, 49] = 1
    assert grid.to_volume(data)[1, 1, 7] == 1


def test_padding_lies_outside_mask():
    grid = NeuronGrid(n_layers=2, width=1531)
    mask = grid.mask()
    assert mask.sum() == grid.n_neurons
    assert (~mask).sum() == 2 * grid.n_padding
    with pytest.raises(ValueError, match="padding"):
        grid.neuron_of(grid.nx - 1, grid.ny - 1, 0)
    volume = grid.to_volume(np.ones((2, 1531), np.float32))
    assert volume[~mask].sum() == 0


def test_mask_img_is_uint8_on_grid():
    grid = NeuronGrid(n_layers=5, width=24)
    img = grid.mask_img()
    assert img.shape == grid.shape
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(img.dataobj) > 0, grid.mask())


@pytest.mark.parametrize("width", [1536, 1531])
def test_nilearn_maskers_read_back_exact_neurons(tmp_path, width):
    grid = NeuronGrid(n_layers=3, width=width)
    rng = np.random.default_rng(2)
    runs = [rng.standard_normal((t, 3, width)).astype(np.float32) for t in (4, 6)]
    paths = []
    for n, acts in enumerate(runs):
        paths.append(tmp_path / f"run{n}.nii")
        nib.save(grid.to_img(acts), paths[-1])
    masker = NiftiMasker(mask_img=grid.mask_img(), standardize=None).fit()
    matrix = masker.transform(paths[0])
    assert matrix.shape == (4, grid.n_neurons)
    np.testing.assert_array_equal(grid.masked_to_neurons(matrix), runs[0])
    multi = MultiNiftiMasker(mask_img=grid.mask_img(), standardize=None).fit()
    for acts, matrix in zip(runs, multi.transform(paths)):
        np.testing.assert_array_equal(grid.masked_to_neurons(matrix), acts)


def test_sidecar_round_trip(tmp_path):
    grid = NeuronGrid(n_layers=3, width=1536, layers=[4, 9, 20], model="m", signal="mlp")
    write_grid(tmp_path / "grid.json", grid)
    spec = json.loads((tmp_path / "grid.json").read_text())
    assert spec["shape"] == [48, 32, 3]
    assert spec["layers"] == [4, 9, 20]
    assert read_grid(tmp_path) == grid


def test_sidecar_with_inconsistent_shape_is_refused():
    spec = NeuronGrid(n_layers=2, width=24).to_dict()
    spec["shape"] = [5, 5, 2]
    with pytest.raises(ValueError, match="shape"):
        NeuronGrid.from_dict(spec)


def test_check_img_names_both_shapes():
    grid = NeuronGrid(n_layers=30, width=1536)
    other = NeuronGrid(n_layers=28, width=1536).to_img(np.zeros((28, 1536), np.float32))
    with pytest.raises(ValueError, match=r"\(48, 32, 30\).*\(48, 32, 28\)"):
        grid.from_img(other)


def test_wrong_activation_shape_is_refused():
    grid = NeuronGrid(n_layers=3, width=24)
    with pytest.raises(ValueError, match=r"'activations' must have trailing axes \(3, 24\)"):
        grid.to_img(np.zeros((5, 3, 23)))


def test_grid_imports_without_torch():
    code = "import sys, llmfbn.grid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
