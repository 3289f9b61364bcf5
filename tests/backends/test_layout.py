"""The one layout builder, tested directly on graphs whose layout is known by hand."""

import torch

from graphwire import ChannelGraph
from graphwire.backends.layout import dag_layout, dag_stages, recurrent_layout
from graphwire.graph import layered_dag


def test_dag_layout_of_a_layered_graph_by_hand():
    g = layered_dag([2, 3, 1])  # 0,1 -> 2,3,4 -> 5, and 0,1 -> 5
    layout = dag_layout(g)
    assert layout.order.tolist() == [0, 1, 2, 3, 4, 5]
    assert [(s.start, s.rows, s.lo, s.base, s.cols) for s in layout.stages] == [
        (2, 3, 0, 0, 2),
        (5, 1, 0, 6, 5),
    ]
    assert layout.size == 11 and layout.num_inputs == 2
    # every edge lands at (row of its target) * cols + (column of its source) of its step
    for (u, v), slot in zip(g.edge_index.t().tolist(), layout.slot.tolist()):
        step = layout.stages[0] if v < 5 else layout.stages[1]
        row, col = v - step.start, u - step.lo
        assert slot == step.base + row * step.cols + col
    assert torch.equal(layout.nodes(layout.stages[0]), torch.tensor([2, 3, 4]))


def test_dag_layout_windows_start_at_the_first_source_and_skip_left_out_nodes():
    # 0 is the input; 1 -> 3 and 2 -> 3; 1 and 2 are fed by 0; node 4 reads only 2
    g = ChannelGraph(
        torch.tensor([[0, 0, 1, 2, 2], [1, 2, 3, 3, 4]]), 5, inputs=[0], outputs=[3, 4]
    )
    full = dag_layout(g)
    assert [(s.start, s.rows, s.lo) for s in full.stages] == [(1, 2, 0), (3, 2, 1)]
    live = torch.tensor([True, True, True, True, False])
    edges = torch.tensor([True, True, False, True, True])  # 1 -> 3 unused
    part = dag_layout(g, live=live, edges=edges)
    assert part.order.tolist() == [0, 1, 2, 3] and part.position[4] == -1
    assert [(s.start, s.rows, s.lo) for s in part.stages] == [(1, 2, 0), (3, 1, 2)]
    assert part.slot[2] == part.size and part.slot[4] == part.size  # not held by a block


def test_dag_stages_put_non_input_sources_with_the_first_generation():
    g = ChannelGraph(torch.tensor([[0, 3], [1, 2]]), 4, inputs=[0], outputs=[1])
    assert [s.tolist() for s in dag_stages(g)] == [[1, 2, 3]]


def test_recurrent_layout_splits_updated_and_held_nodes():
    # input 0 is held (no incoming edge); input 1 has one (1 <- 2): it is updated
    g = ChannelGraph(
        torch.tensor([[0, 1, 2, 2], [2, 2, 1, 2]]),
        3,
        inputs=[0, 1],
        outputs=[2],
    )
    layout = recurrent_layout(g)
    assert layout.updated.tolist() == [1, 2] and layout.held.tolist() == [0]
    assert layout.size == 2 * 2 + 2 * 1
    # A_u[dst, src] at dst * n_u + src; A_h[dst, src] after it
    pos = layout.position
    expected = []
    for u, v in g.edge_index.t().tolist():
        if u == 0:
            expected.append(4 + pos[v] * 1 + 0)
        else:
            expected.append(pos[v] * 2 + pos[u])
    assert layout.slot.tolist() == expected
    upd_from, upd_to, held_from = layout.input_maps(g.inputs)
    assert upd_from.tolist() == [1] and upd_to.tolist() == [0] and held_from.tolist() == [0]
