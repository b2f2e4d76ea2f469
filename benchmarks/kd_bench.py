"""KD ground truth: stand-alone distilled accuracy, the premise, every proxy.

  python benchmarks/kd_bench.py --quick          # the machinery: 65 min here
  python benchmarks/kd_bench.py                  # the full run: 10+ hours
  python benchmarks/kd_bench.py --analyze_only   # tables from the results

(Measured on 2 cores shared with other jobs, load average 6-10: a --quick
run took 65 min, 6 of them for the latency pool; one full-recipe stand-alone
training 343-373 s, the short-train KD proxy 70-133 s per candidate. The
full run is about 150 stand-alone trainings and 40 proxy sets: about 21
worker-hours at that load, 11 hours wall with two workers.)

No search involved. N architectures of the search space (40; --quick 6)
are drawn at random, stratified by the latency the lookup table predicts
so that they span [0.5, 2] x --target_ms (kd_units.select_architectures);
the choice is stored in kd_bench_setup.json, so a resumed run trains the
same ones. Each is trained stand-alone with the final recipe that
benchmarks/akd_vs_nas.py gives a search's winner (its preset flagfile and
budget, the same flags and `akd_vs_nas.method_config`, trained by
`finalize.finalize`), once per recipe:

  kd_resnet_wide, kd_cnn_deep   KD from the built-in teacher, trained and
                                cached as akd-search does for this config
  ce                            plain cross-entropy (kd_alpha 0)

and scored on the 10,000 test images; the first --num_repeats (10) are
trained again with the second --seeds value (the noise floor). Each proxy
of kd_proxies.py (the short-train KD proxy at 1x, 2x and 4x its epochs,
the same with cross-entropy, params, MACs, a DisWOT-style relation score;
the one-shot supernet's score when --proxies names it) scores every
architecture, and the multi-seed ones (the KD proxy, the relation score)
score the repeated architectures under every --seeds value.
--seeds (shared with akd_vs_nas.py, default 0,1,2): the first trains every
architecture, the second the repeats, all of them the proxies' noise.

One JSON line per (architecture, recipe, seed) goes to
benchmarks/results/kd_bench.jsonl and per (architecture, proxy, seed) to
proxy_scores.jsonl, appended durably as each unit finishes; a restart
skips every unit already there (failed ones too, unless --retry_failed), so
kill it at any time and run the same command again. Units run in spawned
worker processes, --num_workers at a time with --threads_per_worker threads
each, a new process per task (see kd_units.py). At the end (and with
--analyze_only) kd_analysis.py answers the three questions: printed as
three tables, written to proxy_fidelity.json and proxy_fidelity.png.
--quick: 6 architectures, KD from --teacher only, akd_vs_nas.py's quick
budget (smaller proxy and final training), files named *_quick.*.

The oneshot proxy's supernet is trained once per run (cached under
--cache_dir, resumable) by akd-search's --supernet_* flags before any
score. A proxy whose one-time preparation fails has its units recorded as
failed, with the error, and the run goes on; --retry_failed prepares it
again. To add the oneshot scores to existing results without training
anything else, then analyze all of them:

  python benchmarks/kd_bench.py --recipes= --proxies=oneshot \
      --supernet_sampling=progressive --supernet_steps=3000 \
      --supernet_warmup_steps=150 --supernet_paths_per_step=2
  python benchmarks/kd_bench.py --analyze_only

(the first run's own tables hold no stand-alone accuracy: a run analyzes
the recipes it runs).
"""

import dataclasses
import json
import os
import platform
import sys
import time
from typing import Dict
import uuid

from absl import app
from absl import flags

import akd_vs_nas  # Its preset, budgets, flags and seeding.
import kd_analysis
import kd_proxies
import kd_units
from akd_tf.cli import flag_configs
from akd_tf.distill import teacher as teacher_lib
from akd_tf.latency import measurer
from akd_tf.nas import evaluate

RECIPES = tuple(f"kd_{t}" for t in teacher_lib.TEACHERS) + ("ce",)
_FORMAT = "akd_tf.kd_bench/1"
# (full, --quick) defaults of the flags below that default to None.
_DEFAULTS = {"num_archs": (40, 6), "num_repeats": (10, 2),
             "pool_size": (400, 60), "num_strata": (4, 3)}
_FINGERPRINT = ("data", "global_params", "proxy", "final",
                "final_train_size", "teacher", "teacher_recipe",
                "teacher_output", "latency", "reward")

NUM_ARCHS = flags.DEFINE_integer(
    "num_archs", None, "Architectures (default 40; --quick 6; the issue "
    "allows 32, not fewer). Fewer than a stored selection holds takes its "
    "first ones, which are stratified too.")
NUM_REPEATS = flags.DEFINE_integer(
    "num_repeats", None, "The first this many architectures are trained "
    "again with the second --seeds value by every recipe, and scored by the "
    "multi-seed proxies under every --seeds value (default 10; --quick 2).")
POOL_SIZE = flags.DEFINE_integer(
    "pool_size", None, "Random architectures whose latency the lookup table "
    "predicts, to pick from (default 400; --quick 60).")
NUM_STRATA = flags.DEFINE_integer(
    "num_strata", None, "Equal-count latency strata (default 4; --quick 3).")
LATENCY_SPAN = flags.DEFINE_list(
    "latency_span", ["0.5", "2.0"], "The strata cover [low, high] x "
    "--target_ms, geometrically.")
SELECTION_SEED = flags.DEFINE_integer(
    "selection_seed", 0, "Seed of the random pool and of the picks.")
RECIPES_FLAG = flags.DEFINE_list(
    "recipes", None, f"Stand-alone recipes to train, of {list(RECIPES)} "
    "(default all; --quick: KD from --teacher only).")
DEFAULT_PROXIES = tuple(name for name, proxy in kd_proxies.PROXIES.items()
                        if proxy.by_default)
PROXIES_FLAG = flags.DEFINE_list(
    "proxies", None, f"Proxies to score, of {list(kd_proxies.PROXIES)} "
    f"(default {list(DEFAULT_PROXIES)}: all but the opt-in ones); empty: "
    "none.")
RESULTS_DIR = flags.DEFINE_string(
    "results_dir", akd_vs_nas.RESULTS_DIR, "Where the results files are "
    "written and resumed from.")
ANALYZE_ONLY = flags.DEFINE_bool(
    "analyze_only", False, "Train nothing: print and write the analysis of "
    "the results there are.")
RETRY_FAILED = flags.DEFINE_bool(
    "retry_failed", False, "Run units recorded as failed again.")
MAX_RETRIES = flags.DEFINE_integer(
    "max_retries", 1, "Times a unit whose worker process died is run again "
    "before it is recorded as failed.")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The benchmark's resolved flags."""

  quick: bool
  num_archs: int
  num_repeats: int
  pool_size: int
  num_strata: int
  span: tuple
  seeds: tuple
  reference: str
  recipes: tuple      # All recipes, the reference first, then CE.
  run_recipes: tuple  # Those this run trains.
  proxies: tuple


def resolve_settings(base) -> Settings:
  """Validates the flags against each other.

  Raises:
    app.UsageError: naming the flag.
  """
  quick = akd_vs_nas.QUICK.value
  values = {name: (flags.FLAGS[name].value if flags.FLAGS[name].value
                   is not None else defaults[quick])
            for name, defaults in _DEFAULTS.items()}
  if base.teacher not in teacher_lib.TEACHERS:
    raise app.UsageError(f"--teacher={base.teacher}: kd_bench.py compares "
                         f"the built-in teachers {teacher_lib.TEACHERS}")
  reference = f"kd_{base.teacher}"
  recipes = (reference, "ce") + tuple(r for r in RECIPES
                                      if r not in (reference, "ce"))
  run_recipes = tuple(RECIPES_FLAG.value if RECIPES_FLAG.value is not None
                      else ([reference] if quick else recipes))
  proxies = tuple(PROXIES_FLAG.value if PROXIES_FLAG.value is not None
                  else DEFAULT_PROXIES)
  try:
    seeds = tuple(int(s) for s in akd_vs_nas.SEEDS.value)
    span = tuple(float(v) for v in LATENCY_SPAN.value)
  except ValueError as error:
    raise app.UsageError(f"--seeds / --latency_span: {error}") from None
  checks = (
      (values["num_archs"] >= 2, f"--num_archs={values['num_archs']} must "
       "be >= 2"),
      (0 <= values["num_repeats"] <= values["num_archs"],
       f"--num_repeats={values['num_repeats']} must be in [0, --num_archs]"),
      (1 <= values["num_strata"] <= values["num_archs"],
       f"--num_strata={values['num_strata']} must be in [1, --num_archs]"),
      (values["pool_size"] >= values["num_archs"],
       f"--pool_size={values['pool_size']} must be >= --num_archs"),
      (len(span) == 2 and 0 < span[0] < span[1],
       f"--latency_span={LATENCY_SPAN.value} must be two numbers 0 < low < "
       "high"),
      (len(seeds) >= 1 and len(set(seeds)) == len(seeds),
       f"--seeds={akd_vs_nas.SEEDS.value} must be distinct integers"),
      (values["num_repeats"] == 0 or len(seeds) >= 2,
       f"--num_repeats={values['num_repeats']} needs two or more --seeds"),
      (set(run_recipes) <= set(RECIPES),
       f"--recipes={RECIPES_FLAG.value}: not all of {list(RECIPES)}"),
      (set(proxies) <= set(kd_proxies.PROXIES),
       f"--proxies={PROXIES_FLAG.value}: not all of "
       f"{list(kd_proxies.PROXIES)}"),
  )
  for ok, message in checks:
    if not ok:
      raise app.UsageError(message)
  if "oneshot" in proxies:
    try:
      base.supernet_recipe()
    except ValueError as error:
      raise app.UsageError(f"--supernet_* (the oneshot proxy's supernet): "
                           f"{error}") from None
  return Settings(quick=quick, span=span, seeds=seeds, reference=reference,
                  recipes=recipes, run_recipes=run_recipes, proxies=proxies,
                  **values)


@dataclasses.dataclass(frozen=True)
class Paths:
  """The results files of a full or --quick run."""

  setup: str
  records: str
  proxies: str
  fidelity: str
  plot: str

  @classmethod
  def of(cls, results_dir: str, quick: bool) -> "Paths":
    suffix = "_quick" if quick else ""
    join = lambda name: os.path.join(results_dir, name)
    return cls(setup=join(f"kd_bench_setup{suffix}.json"),
               records=join(f"kd_bench{suffix}.jsonl"),
               proxies=join(f"proxy_scores{suffix}.jsonl"),
               fidelity=join(f"proxy_fidelity{suffix}.json"),
               plot=join(f"proxy_fidelity{suffix}.png"))


def recipe_config(base, recipe: str, seed: int):
  """The search config whose final training is `recipe` under `seed`.

  Seeds exactly as akd_vs_nas.py seeds a method's search (teacher seed
  fixed at 0), with export off; 'ce' sets the final kd_alpha to 0.
  """
  config = dataclasses.replace(
      akd_vs_nas.method_config(base, "kd", "reinforce", seed), export=False)
  if recipe == "ce":
    return dataclasses.replace(
        config, final=dataclasses.replace(config.final, kd_alpha=0.0))
  return dataclasses.replace(config, teacher=recipe[len("kd_"):])


def fingerprint(base) -> dict:
  """The settings every stored result depends on."""
  config = base.get_config()
  return {key: config[key] for key in _FINGERPRINT}


def _write_json(path: str, value: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)


def load_or_select(base, settings: Settings, paths: Paths,
                   select: bool) -> dict:
  """The stored setup (selection, teachers), or a new selection.

  Raises:
    app.UsageError: the stored results were made with other settings, hold
      fewer architectures than --num_archs, or (`select` False) do not
      exist.
  """
  from akd_tf.space import search_space  # pylint: disable=g-import-not-at-top
  lut_path = measurer.default_lut_path(base.cache_dir, base.latency)
  cache_path = measurer.default_cache_path(base.cache_dir)
  selection_config = kd_units.SelectionConfig(
      space=search_space.SearchSpace(
          stem_size=base.global_params.stem_size).get_config(),
      global_params=base.global_params, data=base.data,
      latency=base.latency, lut_path=lut_path,
      latency_cache_path=cache_path, target_ms=base.reward.target_ms,
      span=settings.span, num_archs=settings.num_archs,
      num_strata=settings.num_strata, pool_size=settings.pool_size,
      seed=SELECTION_SEED.value)
  if os.path.exists(paths.setup):
    with open(paths.setup) as f:
      setup = json.load(f)
    changed = sorted(k for k, v in fingerprint(base).items()
                     if setup["fingerprint"].get(k) != v)
    if changed:
      raise app.UsageError(
          f"{paths.setup} and its results were made with other settings of "
          f"{changed}; run with the same flags, or give another "
          "--results_dir")
    wanted = selection_config.selection_settings()
    if setup["selection"]["settings"] != wanted:
      raise app.UsageError(
          f"{paths.setup} holds architectures selected with "
          f"{setup['selection']['settings']}, not {wanted}: pass the same "
          "--pool_size, --num_strata, --latency_span, --selection_seed and "
          "--target_ms, or give another --results_dir")
    if len(setup["archs"]) < settings.num_archs:
      raise app.UsageError(
          f"--num_archs={settings.num_archs}: {paths.setup} holds "
          f"{len(setup['archs'])} architectures; give at most that many, "
          "or another --results_dir")
    return setup
  if not select:
    raise app.UsageError(f"--analyze_only: {paths.setup} does not exist; "
                         "run without --analyze_only first")
  print(f"{time.strftime('%H:%M:%S')} selecting {settings.num_archs} "
        f"architectures from a pool of {settings.pool_size} (latency table "
        f"{lut_path})", file=sys.stderr, flush=True)
  selection = kd_units.call_in_worker(kd_units.select_architectures,
                                      selection_config)
  archs = selection.pop("archs")
  setup = {"format": _FORMAT, "created": time.strftime("%Y-%m-%d %H:%M"),
           "machine": platform.node(), "fingerprint": fingerprint(base),
           "selection": selection, "archs": archs, "teachers": {}}
  _write_json(paths.setup, setup)
  print(f"selected in {selection['seconds']:.0f} s "
        f"({selection['lut_parts']} table parts); strata edges "
        f"{[round(e, 3) for e in selection['edges_ms']]} ms", file=sys.stderr,
        flush=True)
  return setup


def proxy_setup(base, settings: Settings) -> kd_proxies.ProxySetup:
  lut_path = measurer.default_lut_path(base.cache_dir, base.latency)
  cache_path = measurer.default_cache_path(base.cache_dir)
  return kd_proxies.ProxySetup(
      config=akd_vs_nas.method_config(base, "kd", "reinforce",
                                      settings.seeds[0]),
      lut_path=lut_path, latency_cache_path=cache_path)


def plan(base, settings: Settings, archs, paths: Paths):
  """Every task of the benchmark, architecture by architecture.

  Each stand-alone training is a task of its own (a fresh process); the
  proxies of one architecture and seed share one, but for `one_task`
  proxies, whose units of every architecture make one task at the end.
  """
  threads = base.threads_per_worker
  setup = proxy_setup(base, settings)
  shared = [p for p in settings.proxies if kd_proxies.PROXIES[p].one_task]
  per_arch = [p for p in settings.proxies if p not in shared]
  tasks = []
  for position, a in enumerate(archs):
    repeated = position < settings.num_repeats
    actions, blocks = tuple(a["actions"]), tuple(a["blocks"])
    for recipe in settings.run_recipes:
      for seed in settings.seeds[:2 if repeated else 1]:
        unit = kd_units.StandaloneUnit(
            recipe_config(base, recipe, seed), recipe, a["id"], actions,
            blocks, seed, paths.records)
        tasks.append(kd_units.WorkerTask(unit.key, (unit,), threads))
    groups = [(settings.seeds[0], per_arch)]
    if repeated:
      groups += [(seed, [p for p in per_arch
                         if kd_proxies.PROXIES[p].noise_seeds])
                 for seed in settings.seeds[1:]]
    for seed, names in groups:
      if names:
        tasks.append(kd_units.WorkerTask(
            f"{a['id']}/proxies/seed{seed}",
            tuple(kd_proxies.ProxyUnit(setup, name, a["id"], actions, blocks,
                                       seed, paths.proxies)
                  for name in names), threads))
  for name in shared:
    seeds = (settings.seeds if kd_proxies.PROXIES[name].noise_seeds
             else settings.seeds[:1])
    for seed in seeds:
      scored = [a for position, a in enumerate(archs)
                if seed == settings.seeds[0] or
                position < settings.num_repeats]
      tasks.append(kd_units.WorkerTask(
          f"{name}/seed{seed}",
          tuple(kd_proxies.ProxyUnit(setup, name, a["id"],
                                     tuple(a["actions"]), tuple(a["blocks"]),
                                     seed, paths.proxies)
                for a in scored), threads))
  return tasks


def stored_records(tasks, path: str):
  """The records of `tasks`' units stored in `path`, in plan order."""
  store = kd_units.results_store(path)
  records = (store.get(u.key) for t in tasks for u in t.units
             if u.results_path == path)
  return [r for r in records if r is not None]


def unfinished(tasks, retry_failed: bool):
  """`tasks` without the units already stored (failed ones unless
  `retry_failed`); tasks left with no unit are dropped."""
  stores = {}
  left = []
  for task in tasks:
    units = []
    for unit in task.units:
      store = stores.setdefault(unit.results_path,
                                kd_units.results_store(unit.results_path))
      record = store.get(unit.key)
      if record is None or (retry_failed and
                            record["status"] != kd_units.RESULT_OK):
        units.append(unit)
    if units:
      left.append(dataclasses.replace(task, units=tuple(units)))
  return left


def prepare_proxies(base, settings: Settings, todo) -> Dict[str, dict]:
  """Runs the one-time work of each proxy that has units in `todo`.

  A prepare that raises (or whose process dies) ends only its own proxy:
  it is reported here and `without_unprepared` fails that proxy's units,
  so hours of other units are not lost to it.

  Returns:
    proxy name -> what its prepare returned, or {"error": its error}.
  """
  pending = {unit.proxy for task in todo for unit in task.units
             if isinstance(unit, kd_proxies.ProxyUnit)}
  prepared = {}
  for name in settings.proxies:
    prepare = kd_proxies.PROXIES[name].prepare
    if prepare is None or name not in pending:
      continue
    try:
      prepared[name] = kd_units.call_in_worker(
          prepare, proxy_setup(base, settings),
          threads=base.threads_per_worker)
    except Exception as error:  # pylint: disable=broad-except
      prepared[name] = {"error": evaluate.error_text(error)}
      print(f"{time.strftime('%H:%M:%S')} preparing proxy {name} FAILED: "
            f"{prepared[name]['error']}; its units are recorded as failed "
            "(--retry_failed runs them again)", file=sys.stderr, flush=True)
  return prepared


def without_unprepared(todo, prepared: Dict[str, dict], on_unit):
  """`todo` without the units of the proxies whose prepare failed, each
  recorded as failed with the prepare's error (and passed to `on_unit`)."""
  errors = {name: result["error"] for name, result in prepared.items()
            if "error" in result}
  run_id = uuid.uuid4().hex
  left = []
  for task in todo:
    units = []
    for unit in task.units:
      if getattr(unit, "proxy", None) in errors:
        on_unit(unit, kd_units.record_failed(
            unit, f"preparing proxy {unit.proxy} failed: "
            f"{errors[unit.proxy]}", run_id))
      else:
        units.append(unit)
    if units:
      left.append(dataclasses.replace(task, units=tuple(units)))
  return left


class _Progress:
  """One line per settled unit, with an ETA from the units so far."""

  def __init__(self, todo, num_workers: int):
    self.left = {}
    for task in todo:
      for unit in task.units:
        self.left[self._kind(unit)] = self.left.get(self._kind(unit), 0) + 1
    self.total = sum(self.left.values())
    self.seconds = {}
    self.done = 0
    self.num_workers = num_workers

  @staticmethod
  def _kind(unit) -> str:
    return getattr(unit, "recipe", None) or unit.proxy

  def __call__(self, unit, record) -> None:
    kind = self._kind(unit)
    self.done += 1
    self.left[kind] -= 1
    if record.get("unit_seconds") is not None:
      self.seconds.setdefault(kind, []).append(record["unit_seconds"])
    if record["status"] != kd_units.RESULT_OK:
      what = f"FAILED: {record.get('error')}"
    elif "test_accuracy" in record:
      what = (f"test {100 * record['test_accuracy']:.2f}%, latency "
              f"{record['latency_ms']:.3f} ms, {record['unit_seconds']:.0f} s")
    else:
      what = (f"score {record['score']:.4g} (cost {record['seconds']:.1f} s"
              f", unit {record['unit_seconds']:.0f} s)")
    known = [sum(v) / len(v) for v in self.seconds.values()]
    mean_any = sum(known) / len(known) if known else 0.0
    eta = sum(n * (sum(self.seconds[k]) / len(self.seconds[k])
                   if k in self.seconds else mean_any)
              for k, n in self.left.items()) / self.num_workers
    print(f"{time.strftime('%H:%M:%S')} [{self.done}/{self.total}] "
          f"{unit.key} {what} | ETA {eta / 3600:.1f} h", file=sys.stderr,
          flush=True)


def main(argv):
  del argv
  start = time.time()
  base = flag_configs.search_config_from_flags()
  settings = resolve_settings(base)
  paths = Paths.of(RESULTS_DIR.value, settings.quick)
  os.makedirs(RESULTS_DIR.value, exist_ok=True)
  if not settings.quick and settings.num_archs < 32:
    print(f"note: --num_archs={settings.num_archs} is below the 32 the "
          "issue asks for at least", file=sys.stderr)
  setup = load_or_select(base, settings, paths,
                         select=not ANALYZE_ONLY.value)
  archs = setup["archs"][:settings.num_archs]
  tasks = plan(base, settings, archs, paths)
  if not ANALYZE_ONLY.value:
    kd_configs = [recipe_config(base, r, settings.seeds[0])
                  for r in settings.run_recipes if r != "ce"]
    print(f"{time.strftime('%H:%M:%S')} preparing teachers",
          file=sys.stderr, flush=True)
    setup["teachers"].update(kd_units.call_in_worker(
        kd_units.prepare_teachers, kd_configs,
        proxy_setup(base, settings).config if settings.proxies else None))
    todo = unfinished(tasks, RETRY_FAILED.value)
    prepared = prepare_proxies(base, settings, todo)
    setup.setdefault("proxy_prepare", {}).update(prepared)
    _write_json(paths.setup, setup)
    done = sum(len(t.units) for t in tasks) - sum(len(t.units) for t in todo)
    print(f"{time.strftime('%H:%M:%S')} {sum(len(t.units) for t in todo)} "
          f"units to run in {len(todo)} tasks ({done} already in the "
          f"results), {base.num_workers} workers x "
          f"{base.threads_per_worker or 'default'} threads",
          file=sys.stderr, flush=True)
    progress = _Progress(todo, base.num_workers)
    todo = without_unprepared(todo, prepared, progress)
    runner = kd_units.UnitRunner(
        base.num_workers, MAX_RETRIES.value,
        log=lambda m: print(m, file=sys.stderr, flush=True))
    runner.run(todo, progress)
  proxies = {n: kd_proxies.PROXIES[n] for n in settings.proxies}
  result = kd_analysis.analyze(
      archs, stored_records(tasks, paths.records),
      stored_records(tasks, paths.proxies), settings.recipes,
      settings.run_recipes, proxies, settings.seeds)
  kd_analysis.print_tables(result)
  if settings.quick:
    print("--quick: a small budget; these numbers check the machinery and "
          "are no evidence either way.")
  title = (f"Fashion-MNIST, {len(archs)} architectures, truth = "
           f"{settings.reference} stand-alone test accuracy"
           + (" (--quick: indicative)" if settings.quick else ""))
  kd_analysis.plot(result, paths.plot, title)
  _write_json(paths.fidelity, dict(
      date=time.strftime("%Y-%m-%d"), machine=platform.node(),
      processor=platform.processor() or platform.machine(),
      cpus=os.cpu_count(), quick=settings.quick,
      indicative_only=settings.quick, num_archs=len(archs),
      num_repeats=settings.num_repeats, seeds=list(settings.seeds),
      recipes_run=list(settings.run_recipes),
      proxies={n: p.description for n, p in proxies.items()},
      teachers=setup["teachers"], proxy_prepare=setup.get("proxy_prepare"),
      selection={k: v for k, v in setup["selection"].items()
                 if k != "pool_lut_ms"},
      this_invocation_minutes=(time.time() - start) / 60,
      search_config=base.get_config(), flags=sys.argv[1:], **result))
  print(f"wrote {paths.fidelity} and {paths.plot}")


if __name__ == "__main__":
  # akd_vs_nas.py's preset flagfile and full (or --quick) budget come first.
  app.run(main, argv=akd_vs_nas.argv_with_defaults(sys.argv))
