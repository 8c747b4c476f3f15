//! `[[arm]]`: agents, options, grids and what each option needs (the route table).

use super::*;

impl Validator<'_> {
    // Long (one section of the file, ≈200 lines) on purpose: each key is checked in the
    // order the section documents them and every problem is collected with its location;
    // the blocks are independent and short, and split by key they would only scatter one
    // section's rules over several functions.
    pub(super) fn arm(&mut self, arm: RawArm, span: Range<usize>) -> Option<Arm> {
        let name = arm.name.get_ref().clone();
        let before = self.diags.len();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(
                span_of(&arm.name),
                format!("arm name must be a non-empty word of letters, digits, '_' or '-', found {name:?}"),
            );
        }
        let agent = match arm.agent.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("single") => AgentKind::Single,
            Some("pair") => AgentKind::Pair,
            Some(other) => {
                let s = arm.agent.as_ref().and_then(span_of);
                self.err(
                    s,
                    format!("agent must be \"single\" or \"pair\", found {other:?}"),
                );
                AgentKind::Single
            }
        };
        let persona = |v: &mut Self, p: &Option<Spanned<String>>, default: Persona| match p
            .as_ref()
            .map(|p| p.get_ref().as_str())
        {
            None => default,
            Some("chimera") => Persona::Chimera,
            Some("insight") => Persona::Insight,
            Some("collector") => Persona::Collector,
            Some(other) => {
                v.err(
                    p.as_ref().and_then(span_of),
                    format!(
                        "persona must be \"chimera\" or \"insight\" or \"collector\", found {other:?}"
                    ),
                );
                default
            }
        };

        // Arm-level base options: `options`, plus the max_tokens/keep_alive shorthands.
        let mut base = match &arm.options {
            Some(t) => self.options_table(t.get_ref(), &[]).0,
            None => ModelOptions::default(),
        };
        if let Some(v) = &arm.max_tokens {
            let mut one = ModelOptions::default();
            self.set_option(&mut one, "num_predict", v);
            base = base.merged_with(&one);
        }
        if let Some(v) = &arm.keep_alive {
            let mut one = ModelOptions::default();
            self.set_option(&mut one, "keep_alive", v);
            base = base.merged_with(&one);
        }
        let arm_endpoint = arm.endpoint.as_ref().map(|e| {
            self.check_url(e);
            e.get_ref().clone()
        });
        let arm_model = arm.model.as_ref().map(|m| m.get_ref().clone());
        let prompt_version = self.prompt_version(&arm.prompt_version, self.prompt_version);
        let arm_mode = self.persona_mode(&arm.persona_mode, self.persona_mode);

        let members = match agent {
            AgentKind::Single => {
                for (key, v) in [("a", &arm.a), ("b", &arm.b)] {
                    if let Some(v) = v {
                        self.err(
                            span_of(v),
                            format!("key `{key}` applies only to agent = \"pair\"; a single agent takes `options` and `grid`"),
                        );
                    }
                }
                vec![MemberTemplate {
                    slot: Slot::Single,
                    persona: persona(self, &arm.persona, Persona::Chimera),
                    persona_mode: arm_mode,
                    prompt_version,
                    options: base.clone(),
                    endpoint: arm_endpoint.clone(),
                    model: arm_model.clone(),
                }]
            }
            AgentKind::Pair => {
                if arm.persona.is_some() {
                    self.err(
                        arm.persona.as_ref().and_then(span_of),
                        "a pair arm sets persona per agent: a = { persona = \"insight\", … }",
                    );
                }
                let mut out = Vec::new();
                // The seed pairs: DataCollector-9000 on A, InsightAgent on B.
                for (slot, t, default_persona) in [
                    (Slot::A, &arm.a, Persona::Collector),
                    (Slot::B, &arm.b, Persona::Insight),
                ] {
                    let Some(t) = t else {
                        self.err(
                            Some(span.clone()),
                            format!(
                                "pair arm {name:?} needs `{}` = {{ … }}: the options of Agent {} (use {{}} for server defaults)",
                                slot.as_str().to_lowercase(),
                                slot.as_str()
                            ),
                        );
                        continue;
                    };
                    let (opts, extra) = self.options_table(
                        t.get_ref(),
                        &["persona", "persona_mode", "endpoint", "model"],
                    );
                    let mut m = MemberTemplate {
                        slot,
                        persona: default_persona,
                        persona_mode: arm_mode,
                        prompt_version,
                        options: base.merged_with(&opts),
                        endpoint: arm_endpoint.clone(),
                        model: arm_model.clone(),
                    };
                    for (k, v) in extra {
                        let text = match v.get_ref() {
                            toml::Value::String(s) => s.clone(),
                            other => {
                                self.err(
                                    span_of(&v),
                                    format!("`{k}` must be a string, found {}", other.type_str()),
                                );
                                continue;
                            }
                        };
                        match k.as_str() {
                            "persona" => {
                                let p = Spanned::new(v.span(), text);
                                m.persona = persona(self, &Some(p), default_persona);
                            }
                            "persona_mode" => {
                                let p = Spanned::new(v.span(), text);
                                m.persona_mode = self.persona_mode(&Some(p), arm_mode);
                            }
                            "endpoint" => {
                                self.check_url(&Spanned::new(v.span(), text.clone()));
                                m.endpoint = Some(text);
                            }
                            _ => m.model = Some(text),
                        }
                    }
                    out.push(m);
                }
                out
            }
        };

        let calls_per_point = match agent {
            AgentKind::Single => 2u64,
            AgentKind::Pair => 8u64,
        };
        let points = self.points(
            &arm.grid,
            &arm.include,
            &arm.exclude,
            &name,
            calls_per_point,
        );
        let quantized_without_fa = points.iter().find_map(|p| {
            members.iter().find_map(|m| {
                let o = m.options.merged_with(p);
                match (o.flash_attn, o.kv_cache_type.as_deref()) {
                    (Some(false), Some(t)) if t.starts_with('q') || t.starts_with("iq") => {
                        Some(t.to_string())
                    }
                    _ => None,
                }
            })
        });
        if let Some(t) = quantized_without_fa {
            let at = arm.grid.as_ref().and_then(span_of).or(Some(span.clone()));
            self.err(
                at,
                format!(
                    "arm {name:?}: kv_cache_type {t:?} with flash_attn = false: llama.cpp \
                     refuses a quantized V cache without flash attention (llama-context.cpp: \
                     \"quantized V cache requires flash_attn to be enabled\"); exclude those \
                     points, e.g. exclude = [{{ flash_attn = false, kv_cache_type = \"{t}\" }}]"
                ),
            );
        }
        let speedup = self.workload_levels(&arm, &name, agent, &members, &points, &span);
        let open_loop = self.open_loop(&arm, &name, agent, &members, &points, &span);
        if self.server.is_some() {
            self.managed_arm(&arm, &name, &members, &points, span);
        }
        if self.diags.len() > before {
            return None;
        }
        Some(Arm {
            name,
            agent,
            members,
            points,
            speedup,
            open_loop,
        })
    }

    /// `rate` (open-loop arrivals per second) with `arrivals` and `requests`: one agent run
    /// per arrival, so a single arm only, and neither `agents` (closed loop) nor `speedup`.
    fn open_loop(
        &mut self,
        arm: &RawArm,
        name: &str,
        agent: AgentKind,
        members: &[MemberTemplate],
        points: &[ModelOptions],
        span: &Range<usize>,
    ) -> Option<OpenLoop> {
        let merged = || {
            points
                .iter()
                .flat_map(|p| members.iter().map(move |m| m.options.merged_with(p)))
        };
        let has_rate = merged().any(|o| o.rate.is_some());
        let at = arm.grid.as_ref().and_then(span_of).or(Some(span.clone()));
        if !has_rate {
            for (key, s) in [
                ("arrivals", arm.arrivals.as_ref().and_then(span_of)),
                ("requests", arm.requests.as_ref().and_then(span_of)),
                ("duration_s", arm.duration_s.as_ref().and_then(span_of)),
            ] {
                if s.is_some() {
                    self.err(
                        s,
                        format!(
                            "arm {name:?}: `{key}` applies to an open-loop arm: give it a rate \
                             (e.g. grid.rate = [0.5, 1, 2]), or remove `{key}`"
                        ),
                    );
                }
            }
            return None;
        }
        if agent == AgentKind::Pair {
            self.err(
                at,
                format!(
                    "arm {name:?}: rate applies to agent = \"single\" (one agent run per arrival)"
                ),
            );
            return None;
        }
        if merged().any(|o| o.rate.is_some() && o.agents.is_some()) {
            self.err(
                at,
                format!(
                    "arm {name:?}: a cell sets both agents and rate; agents is a closed loop \
                     (N agents, each starts when the last finished), rate an open one \
                     (arrivals on a schedule): put them in two arms"
                ),
            );
            return None;
        }
        if merged().any(|o| o.rate.is_none()) {
            self.err(
                at,
                format!(
                    "arm {name:?}: every cell of an open-loop arm needs a rate (some grid \
                     points have none)"
                ),
            );
            return None;
        }
        if let Some(f) = arm.speedup.as_ref().filter(|f| *f.get_ref()) {
            self.err(
                span_of(f),
                "speedup applies to agents = N (closed loop); an open-loop arm has no \
                 back-to-back baseline",
            );
            return None;
        }
        let arrivals = match arm.arrivals.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("poisson") => Arrivals::Poisson,
            Some("constant") => Arrivals::Constant,
            Some(other) => {
                self.err(
                    arm.arrivals.as_ref().and_then(span_of),
                    format!("arrivals must be \"poisson\" or \"constant\", found {other:?}"),
                );
                return None;
            }
        };
        let requests = match &arm.requests {
            None => DEFAULT_OPEN_LOOP_REQUESTS,
            Some(r) if (1..=i64::from(MAX_AGENTS)).contains(r.get_ref()) => *r.get_ref() as u32,
            Some(r) => {
                self.err(
                    span_of(r),
                    format!(
                        "requests must be an integer in 1..={MAX_AGENTS} (arrivals per unit), \
                         found {}",
                        r.get_ref()
                    ),
                );
                return None;
            }
        };
        let rates: Vec<f64> = merged().filter_map(|o| o.rate).collect();
        let window_ms = self.open_loop_window(arm, name, &rates).ok()?;
        Some(OpenLoop {
            arrivals,
            requests,
            window_ms,
        })
    }

    /// `duration_s` of an open-loop arm in ms (`None`: a request count): not with
    /// `requests`, in 0.001..=3600 s, and at most MAX_AGENTS arrivals at every rate. `Err`
    /// when it was refused (the error is recorded).
    fn open_loop_window(
        &mut self,
        arm: &RawArm,
        name: &str,
        rates: &[f64],
    ) -> Result<Option<u32>, ()> {
        let Some(d) = &arm.duration_s else {
            return Ok(None);
        };
        if arm.requests.is_some() {
            self.err(
                span_of(d),
                "give an open-loop arm either `requests` (arrivals per unit) or \
                 `duration_s` (a window of round(rate × duration_s) arrivals), not both",
            );
            return Err(());
        }
        let secs = *d.get_ref();
        if !(secs.is_finite() && (0.001..=3600.0).contains(&secs)) {
            self.err(
                span_of(d),
                format!(
                    "duration_s must be a number of seconds in 0.001..=3600 (the window of \
                     each unit's arrivals), found {secs}"
                ),
            );
            return Err(());
        }
        let window = OpenLoop {
            arrivals: Arrivals::Poisson,
            requests: DEFAULT_OPEN_LOOP_REQUESTS,
            window_ms: Some((secs * 1000.0).round() as u32),
        };
        if let Some(r) = rates.iter().find(|r| window.arrivals_at(**r) > MAX_AGENTS) {
            self.err(
                span_of(d),
                format!(
                    "arm {name:?}: at rate {r}/s, duration_s = {secs} is {} arrivals per unit; \
                     at most {MAX_AGENTS}: shorten duration_s to {:.3} s or less, or split \
                     the rates over two arms",
                    window.arrivals_at(*r),
                    f64::from(MAX_AGENTS) / r
                ),
            );
            return Err(());
        }
        Ok(window.window_ms)
    }

    /// `agents` (N copies of a single arm's agent at once) and `speedup` (also run them back
    /// to back): a pair is already two agents, and a speedup needs more than one.
    fn workload_levels(
        &mut self,
        arm: &RawArm,
        name: &str,
        agent: AgentKind,
        members: &[MemberTemplate],
        points: &[ModelOptions],
        span: &Range<usize>,
    ) -> bool {
        let most = points
            .iter()
            .flat_map(|p| members.iter().map(move |m| m.options.merged_with(p)))
            .map(|o| o.agents.unwrap_or(1))
            .max()
            .unwrap_or(1);
        let any_level = points.iter().any(|p| {
            members
                .iter()
                .any(|m| m.options.merged_with(p).agents.is_some())
        });
        let at = arm.grid.as_ref().and_then(span_of).or(Some(span.clone()));
        if agent == AgentKind::Pair && any_level {
            self.err(
                at,
                format!(
                    "arm {name:?}: agents applies to agent = \"single\" (N copies of its agent \
                     at once); a pair is already two agents"
                ),
            );
            return false;
        }
        let Some(flag) = &arm.speedup else {
            return false;
        };
        if points.is_empty() {
            // The grid already failed: its errors say why.
            return false;
        }
        let at = span_of(flag);
        if agent == AgentKind::Pair {
            self.err(
                at,
                "speedup applies to a single arm with agents > 1: a pair always runs both phases",
            );
            return false;
        }
        if *flag.get_ref() && most < 2 {
            self.err(
                at,
                format!(
                    "arm {name:?}: speedup = true needs a level of agents > 1 (e.g. grid.agents = \
                     [1, 2, 4]); one agent has nothing to run back to back"
                ),
            );
            return false;
        }
        *flag.get_ref()
    }

    /// An arm under `[server]` has no endpoint of its own: sweep chooses the addresses. And
    /// no cell's server setting may be overridden by a fixed `[server] env` variable (which
    /// is applied last): its axis would be silently meaningless.
    pub(super) fn managed_arm(
        &mut self,
        arm: &RawArm,
        name: &str,
        members: &[MemberTemplate],
        points: &[ModelOptions],
        span: Range<usize>,
    ) {
        if let Some(srv) = self.server.clone().filter(|s| !s.env.is_empty()) {
            let own = ServerConfig {
                env: BTreeMap::new(),
                ..srv.clone()
            };
            let clash = points
                .iter()
                .flat_map(|p| members.iter().map(move |m| m.options.merged_with(p)))
                .find_map(|o| {
                    own.launch(&o, "", 0)
                        .env
                        .into_keys()
                        .find(|k| srv.env.contains_key(k) && k != "OLLAMA_HOST")
                });
            if let Some(k) = clash {
                let at = arm.grid.as_ref().and_then(span_of).or(Some(span.clone()));
                self.err(
                    at,
                    format!(
                        "arm {name:?}: a cell's server setting becomes {k}, but [server] env \
                         sets {k} too and would override it in every cell: remove {k} from \
                         [server] env (the option sets it per cell), or the option from the arm"
                    ),
                );
            }
        }
        if members.iter().any(|m| m.endpoint.is_some()) {
            let at = arm.endpoint.as_ref().and_then(span_of).or(Some(span));
            self.err(
                at,
                format!(
                    "arm {name:?} sets an endpoint, but [server] makes sweep start the server \
                     and choose its address: remove the endpoint"
                ),
            );
        }
    }

    /// Expands `grid` (cartesian product), drops `exclude` matches, appends `include` points.
    pub(super) fn points(
        &mut self,
        grid: &Option<Spanned<GridTable>>,
        include: &Option<Spanned<Vec<Spanned<OptTable>>>>,
        exclude: &Option<Spanned<Vec<Spanned<OptTable>>>>,
        arm: &str,
        calls_per_point: u64,
    ) -> Vec<ModelOptions> {
        let mut points = vec![ModelOptions::default()];
        let before = self.diags.len();
        if let Some(g) = grid {
            // Size the grid before expanding it: a cartesian product can outgrow memory.
            let size = g.get_ref().values().fold(1u128, |n, v| {
                n.saturating_mul(v.get_ref().len().max(1) as u128)
            });
            let (units, max_calls) = self.limits;
            let calls = size
                .saturating_mul(u128::from(units))
                .saturating_mul(u128::from(calls_per_point));
            if calls > u128::from(max_calls) {
                self.err(
                    span_of(g),
                    format!(
                        "arm {arm:?}: this grid expands to {size} points × {units} units × \
                         {calls_per_point} calls = {calls} LLM calls, above [run] max_calls = \
                         {max_calls}; shrink the grid or raise max_calls"
                    ),
                );
                return Vec::new();
            }
            if g.get_ref().is_empty() {
                self.err(
                    span_of(g),
                    format!("arm {arm:?}: empty grid; give at least one option with a list of values, or remove [arm.grid]"),
                );
            }
            for (key, values) in g.get_ref() {
                if !OPTION_NAMES.contains(&key.get_ref().as_str()) && key.get_ref() != "max_tokens"
                {
                    self.unknown_option(key);
                    continue;
                }
                if values.get_ref().is_empty() {
                    self.err(
                        span_of(values),
                        format!(
                            "grid axis `{}` has no values: expected a non-empty array",
                            key.get_ref()
                        ),
                    );
                    continue;
                }
                let mut seen = Vec::new();
                let mut next = Vec::new();
                for v in values.get_ref() {
                    let mut one = ModelOptions::default();
                    if !self.set_option(&mut one, key.get_ref(), v) {
                        continue;
                    }
                    if seen.contains(&one) {
                        self.err(
                            span_of(v),
                            format!("grid axis `{}` repeats a value", key.get_ref()),
                        );
                        continue;
                    }
                    seen.push(one.clone());
                    for p in &points {
                        next.push(p.merged_with(&one));
                    }
                }
                points = next;
            }
        }
        if let Some(ex) = exclude {
            for e in ex.get_ref() {
                let (pat, _) = self.options_table(e.get_ref(), &[]);
                if pat.is_empty() {
                    self.err(span_of(e), "an exclude entry must name at least one option");
                    continue;
                }
                let before = points.len();
                points.retain(|p| !matches(p, &pat));
                if points.len() == before {
                    self.err(
                        span_of(e),
                        "this exclude entry matches no grid point (check option names and values)",
                    );
                }
            }
        }
        if let Some(inc) = include {
            for i in inc.get_ref() {
                let (p, _) = self.options_table(i.get_ref(), &[]);
                if !points.contains(&p) {
                    points.push(p);
                }
            }
        }
        if points.is_empty() && self.diags.len() == before {
            let span = grid.as_ref().and_then(span_of);
            self.err(
                span,
                format!("arm {arm:?}: every grid point was excluded; nothing to run"),
            );
        }
        points
    }

    pub(super) fn unknown_option(&mut self, key: &Spanned<String>) {
        self.err(
            span_of(key),
            format!(
                "unknown option `{}`; expected one of: {}, max_tokens",
                key.get_ref(),
                OPTION_NAMES.join(", ")
            ),
        );
    }

    /// Parses a table of options; keys listed in `allowed_extra` are handed back untouched.
    pub(super) fn options_table(
        &mut self,
        t: &OptTable,
        allowed_extra: &[&str],
    ) -> (ModelOptions, Vec<(String, Spanned<toml::Value>)>) {
        let mut o = ModelOptions::default();
        let mut extra = Vec::new();
        for (k, v) in t {
            if allowed_extra.contains(&k.get_ref().as_str()) {
                extra.push((k.get_ref().clone(), v.clone()));
                continue;
            }
            if !OPTION_NAMES.contains(&k.get_ref().as_str()) && k.get_ref() != "max_tokens" {
                if allowed_extra.is_empty() {
                    self.unknown_option(k);
                } else {
                    self.err(
                        span_of(k),
                        format!(
                            "unknown key `{}`; expected an option ({}, max_tokens) or one of: {}",
                            k.get_ref(),
                            OPTION_NAMES.join(", "),
                            allowed_extra.join(", ")
                        ),
                    );
                }
                continue;
            }
            self.set_option(&mut o, k.get_ref(), v);
        }
        (o, extra)
    }

    /// Checks one option value's type and range; returns false (and records why) when bad.
    pub(super) fn set_option(
        &mut self,
        o: &mut ModelOptions,
        key: &str,
        v: &Spanned<toml::Value>,
    ) -> bool {
        let span = span_of(v);
        let val = v.get_ref();
        let as_int = |val: &toml::Value| match val {
            toml::Value::Integer(i) => Some(*i),
            _ => None,
        };
        let as_num = |val: &toml::Value| match val {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        let found = || format!("{} {}", val.type_str(), short(val));
        macro_rules! bad {
            ($($arg:tt)*) => {{
                self.err(span, format!($($arg)*));
                return false;
            }};
        }
        match key {
            "num_gpu" => match as_int(val) {
                Some(i) if (0..=100_000).contains(&i) => o.num_gpu = Some(i as u32),
                _ => bad!("num_gpu must be an integer ≥ 0 (layers offloaded to the GPU), found {}", found()),
            },
            "num_ctx" => match as_int(val) {
                Some(i) if (1..=10_000_000).contains(&i) => o.num_ctx = Some(i as u32),
                _ => bad!("num_ctx must be a positive integer (context length in tokens), found {}", found()),
            },
            "temperature" => match as_num(val) {
                Some(x) if x.is_finite() && (0.0..=100.0).contains(&x) => o.temperature = Some(x),
                _ => bad!("temperature must be a number ≥ 0, found {}", found()),
            },
            "top_p" => match as_num(val) {
                Some(x) if x > 0.0 && x <= 1.0 => o.top_p = Some(x),
                _ => bad!("top_p must be a number in (0, 1], found {}", found()),
            },
            "top_k" => match as_int(val) {
                Some(i) if (0..=1_000_000).contains(&i) => o.top_k = Some(i as u32),
                _ => bad!("top_k must be an integer ≥ 0, found {}", found()),
            },
            "repeat_penalty" => match as_num(val) {
                Some(x) if x.is_finite() && x > 0.0 => o.repeat_penalty = Some(x),
                _ => bad!("repeat_penalty must be a number > 0, found {}", found()),
            },
            "seed" => match as_int(val) {
                Some(i) if i >= 0 => o.seed = Some(i as u64),
                _ => bad!("seed must be an integer ≥ 0, found {}", found()),
            },
            "num_predict" | "max_tokens" => match as_int(val) {
                Some(i) if (1..=1_000_000).contains(&i) => o.num_predict = Some(i as u32),
                _ => bad!("{key} must be a positive integer (tokens to generate), found {}", found()),
            },
            "keep_alive" => match val {
                toml::Value::String(s) if !s.is_empty() => o.keep_alive = Some(s.clone()),
                toml::Value::Integer(i) => o.keep_alive = Some(format!("{i}s")),
                _ => bad!("keep_alive must be a duration string like \"5m\" or seconds as an integer, found {}", found()),
            },
            "flash_attn" => match val {
                toml::Value::Boolean(b) => o.flash_attn = Some(*b),
                _ => bad!("flash_attn must be true or false, found {}", found()),
            },
            "kv_cache_type" => match val {
                toml::Value::String(s) if KV_CACHE_TYPES.contains(&s.as_str()) => {
                    o.kv_cache_type = Some(s.clone())
                }
                _ => bad!(
                    "kv_cache_type must be one of {} (llama.cpp's KV cache types), found {}",
                    KV_CACHE_TYPES.join(", "),
                    found()
                ),
            },
            "parallel" => match as_int(val) {
                Some(i) if (1..=1024).contains(&i) => o.parallel = Some(i as u32),
                _ => bad!("parallel must be an integer in 1..=1024 (requests served at once), found {}", found()),
            },
            "batch_size" | "ubatch_size" => match as_int(val) {
                Some(i) if (1..=1_000_000).contains(&i) => {
                    if key == "batch_size" {
                        o.batch_size = Some(i as u32)
                    } else {
                        o.ubatch_size = Some(i as u32)
                    }
                }
                _ => bad!("{key} must be a positive integer (tokens per batch), found {}", found()),
            },
            "threads" => match as_int(val) {
                Some(i) if (1..=4096).contains(&i) => o.threads = Some(i as u32),
                _ => bad!("threads must be a positive integer (CPU threads), found {}", found()),
            },
            "rate" => match as_num(val) {
                Some(x) if x.is_finite() && x > 0.0 && x <= MAX_RATE => o.rate = Some(x),
                _ => bad!(
                    "rate must be a number in (0, {MAX_RATE}] (open-loop arrivals per second), \
                     found {}",
                    found()
                ),
            },
            "agents" => match as_int(val) {
                Some(i) if (1..=i64::from(MAX_AGENTS)).contains(&i) => o.agents = Some(i as u32),
                _ => bad!(
                    "agents must be an integer in 1..={MAX_AGENTS} (copies of the arm's agent run \
                     at once), found {}",
                    found()
                ),
            },
            _ => bad!("unknown option `{key}`"),
        }
        let name = if key == "max_tokens" {
            "num_predict"
        } else {
            key
        };
        if let Err(why) = route(name, self.kind, self.server.as_ref()) {
            bad!("{why}");
        }
        true
    }
}

/// A managed server's slots, where every cell asks for the same number: what the
/// shared-endpoint warning needs instead of a hand-declared `num_parallel`.
pub(super) fn server_parallel(server: &Option<ServerConfig>, arms: &[Arm]) -> Option<u32> {
    server.as_ref()?;
    let mut values = arms.iter().flat_map(|a| {
        a.points.iter().flat_map(move |p| {
            a.members
                .iter()
                .map(move |m| m.options.merged_with(p).parallel)
        })
    });
    let first = values.next()?;
    // No cell sets it: a fixed OLLAMA_NUM_PARALLEL in `[server] env`, else one slot (the
    // llama-server preset's -np 1, Ollama's default in current releases).
    let fixed = || {
        let s = server.as_ref()?;
        (s.preset == crate::spec::server::Preset::Ollama)
            .then(|| s.env.get("OLLAMA_NUM_PARALLEL")?.trim().parse::<u32>().ok())
            .flatten()
    };
    values
        .all(|v| v == first)
        .then(|| first.or_else(fixed).unwrap_or(1))
}

/// True when every option set in `pat` has the same value in `p`.
pub(super) fn matches(p: &ModelOptions, pat: &ModelOptions) -> bool {
    let pm = p.to_map();
    pat.to_map().iter().all(|(k, v)| pm.get(k) == Some(v))
}

pub(super) fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary_compat(40)])
    } else {
        s
    }
}
