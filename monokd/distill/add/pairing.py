"""Which teacher query each student query is distilled toward in L_ed (Eq. 5).

- ``index`` (the paper): student query i <-> teacher query i. Sound only while query i means
  the same thing in both, i.e. when the student starts from the teacher's weights and sees its
  data order; otherwise nothing ties the two decoders' query slots together.
- ``gt_matched``: each GT object j that both Hungarian matchings assign (student query s_j,
  teacher query t_j) gives the pair (s_j, t_j):

      L_ed^k = alpha_v * sum_j || F_a^k[s_j] - T_v^k[t_j] ||^2 / normaliser

  Queries matched to no object (or by only one of the two) have no counterpart, so there is
  no background term. DETR-distillation papers align the two decoders' outputs with a
  bipartite matching between teacher and student predictions (DETRDistill's
  Hungarian-matching logits distillation; D3ETR's adaptive matching); this rule instead
  routes through the GT, which both matchings already compute, so it adds no matching of its
  own.
"""

from __future__ import annotations

import torch


def gt_pairs(student_matches: list[tuple[torch.Tensor, torch.Tensor]],
             teacher_matches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, (student_query (P,), teacher_query (P,)) of the GT objects both matched.

    Args:
        student_matches, teacher_matches: per image ``(query_idx (M,), target_idx (M,))``
            from ``match_foreground`` (one query per target at most).
    Returns:
        per image two (P,) long tensors, ordered by target index.
    """
    if len(student_matches) != len(teacher_matches):
        raise ValueError(f"gt_pairs: {len(student_matches)} student vs {len(teacher_matches)} teacher images")
    pairs = []
    for (s_query, s_target), (t_query, t_target) in zip(student_matches, teacher_matches):
        s_query, s_target, t_query, t_target = (torch.as_tensor(x, dtype=torch.long).cpu()
                                                for x in (s_query, s_target, t_query, t_target))
        teacher_of = {int(j): int(q) for q, j in zip(t_query, t_target)}
        both = sorted((int(j), int(q)) for q, j in zip(s_query, s_target) if int(j) in teacher_of)
        pairs.append((torch.tensor([q for _, q in both], dtype=torch.long),
                      torch.tensor([teacher_of[j] for j, _ in both], dtype=torch.long)))
    return pairs


def gt_matched_targets(teacher_queries: torch.Tensor, student_matches: list, teacher_matches: list
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher state each student query is pulled toward, and which student queries have one.

    Args:
        teacher_queries: (B, Q, C) one decoder layer's teacher states.
    Returns:
        target (B, Q, C): at student query s_j the teacher's state t_j, zeros elsewhere;
        mask (B, Q) bool: True at the s_j (the only cells the loss may read).
    """
    target = torch.zeros_like(teacher_queries)
    mask = torch.zeros(teacher_queries.shape[:2], dtype=torch.bool, device=teacher_queries.device)
    for b, (s_idx, t_idx) in enumerate(gt_pairs(student_matches, teacher_matches)):
        s_idx, t_idx = s_idx.to(teacher_queries.device), t_idx.to(teacher_queries.device)
        target[b, s_idx] = teacher_queries[b, t_idx]
        mask[b, s_idx] = True
    return target, mask
