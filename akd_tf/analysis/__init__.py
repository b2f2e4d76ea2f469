"""Analysis of finished searches and of rankings.

Imports `akd_tf.space` and `akd_tf.nas` (histories), never deploy or the
CLI.

  teacher_dependence  load_search, top_candidates, choice_distributions,
                      permutation_test: do searches with different teachers
                      prefer different architectures?
  plots               plot_choice_distributions (matplotlib)
  rank_stats          spearman, kendall_tau, top_k_regret (numpy)
"""
