"""Neural architecture search: controllers, rewards, history, evaluation, loop.

Imports `akd_tf.space`, `akd_tf.distill`, `akd_tf.latency` and
`akd_tf.oneshot`, never deploy or analysis.

  controller  ReinforceController, RandomController, make_controller,
              ControllerConfig
  reward      RewardConfig, compute_reward (MnasNet soft/hard, TuNAS abs)
  history     History (crash-safe history.jsonl), CandidateRecord,
              load_history, to_dataframe
  evaluate    one candidate end to end, trained or scored one-shot:
              EvalConfig, CandidateTask, CandidateTimer, CandidateEvaluator;
              prepare_worker_process
  local_pool  LocalPool: candidates in local worker processes
  ray_pool    RayPool: the same pool as Ray tasks (optional extra)
  report      best_record, pareto_front, plot_pareto, plot_rewards,
              top_table
  board       SearchBoard: TensorBoard scalars and an HParams session per
              candidate
  config      SearchConfig (a whole search's settings),
              check_resume_config (what a resumed search must keep),
              DEFAULT_CANDIDATES_PER_WORKER; the one-shot proxy's settings
  loop        run_search (sample, evaluate, reward, update; resume)
              -> SearchResult, whose best record deploy trains
              (`akd_tf.deploy.pipeline`)
"""
