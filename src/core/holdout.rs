//! Holdouts: which users get guidance, decided so that its effect can be measured
//! (docs/EXPERIMENTS.md).
//!
//! Every experiment splits identified users into two arms, `control` and `treatment`, by a
//! deterministic draw in [0, 1) from (the project's salt, the experiment id, the user id):
//!
//! - `global` (the plan's `holdouts.globalPercent`): the control arm gets no guidance at all (no
//!   tip, tour, checklist, survey or prompt). Guidance is otherwise unchanged.
//! - `tip:<id>` (a tip's `controlPercent`): among users outside the global holdout, the control
//!   arm never sees that tip. Prompts and surveys (their `controlPercent`) use `prompt:<id>` and
//!   `survey:<id>` the same way.
//!
//! The draw is a pure function of those three strings, so it is the same on every device and tab
//! with no coordination and no storage; anonymous visitors are in no experiment (they are not
//! analysed, and guidance waits for `identify` anyway). The SDK reports each assignment once per
//! user as an `experiment_assigned` event, and analysis reads those events, never this code: a
//! plan whose percentages change later does not re-sort users already counted.
//!
//! The hash: FNV-1a 64 over the UTF-8 bytes of `salt`, a 0 byte, `experiment`, a 0 byte, `user`
//! (offset basis 0xcbf29ce484222325, prime 0x100000001b3), then MurmurHash3's 64-bit finaliser
//! (fmix64), because FNV's last bytes barely reach its high bits; the top 53 bits divided by 2^53
//! are the draw. A user is in the control arm when the draw is below `percent / 100`.
//! Hand-written (a dozen lines) instead of a hashing crate: it ships in the wasm, and the
//! collector's tests reproduce it independently.

use super::plan::Plan;

/// The experiment id of the global holdout.
pub const GLOBAL: &str = "global";

/// The two arms; the names are the `arm` prop of `experiment_assigned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    Control,
    Treatment,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Control => "control",
            Arm::Treatment => "treatment",
        }
    }
}

/// FNV-1a 64's offset basis: where a hash starts.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 over `bytes`, continuing from `h` (also used by surveys' sampling).
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The user's draw in [0, 1) for `experiment`.
pub fn draw(salt: &str, experiment: &str, user: &str) -> f64 {
    let mut h = fnv1a(FNV_OFFSET, salt.as_bytes());
    h = fnv1a(h, &[0]);
    h = fnv1a(h, experiment.as_bytes());
    h = fnv1a(h, &[0]);
    h = fnv1a(h, user.as_bytes());
    (fmix64(h) >> 11) as f64 / (1u64 << 53) as f64
}

/// The user's arm in an experiment whose control arm is `percent` % of users.
pub fn arm(salt: &str, experiment: &str, user: &str, percent: f64) -> Arm {
    if draw(salt, experiment, user) < percent / 100.0 {
        Arm::Control
    } else {
        Arm::Treatment
    }
}

/// The experiment id of a tip's control group.
pub fn tip_experiment(tip_id: &str) -> String {
    String::from("tip:") + tip_id
}

/// The experiment id of a survey's control group.
pub fn survey_experiment(survey_id: &str) -> String {
    String::from("survey:") + survey_id
}

/// Every experiment of `plan` that `user` is in, with their arm: the global holdout when the plan
/// has one, and, unless the user is held out globally, each tip, prompt and survey that has a
/// control group. This is what the SDK reports at identify.
pub fn assignments(plan: &Plan, user: &str) -> Vec<(String, Arm)> {
    let h = &plan.holdouts;
    let mut out = Vec::new();
    if h.global_percent > 0.0 {
        let global = arm(&h.salt, GLOBAL, user, h.global_percent);
        out.push((GLOBAL.into(), global));
        if global == Arm::Control {
            return out;
        }
    }
    let tips = plan.tips.iter().map(|t| (tip_experiment(&t.id), t.control_percent));
    let prompts = plan.prompts.iter().map(|p| (String::from("prompt:") + &p.id, p.control_percent));
    let surveys = plan.surveys.iter().map(|s| (survey_experiment(&s.id), s.control_percent));
    for (id, percent) in tips.chain(prompts).chain(surveys).filter(|(_, percent)| *percent > 0.0) {
        let a = arm(&h.salt, &id, user, percent);
        out.push((id, a));
    }
    out
}

/// Why guidance is withheld from `user`, if it is: the experiment whose control arm they are in.
/// `experiment` names the guidance's own experiment (`tip:<id>`) with its control percentage.
///
/// The one gate every kind of guidance asks before showing (tips, prompts and surveys, each with
/// its own experiment id), so the global holdout holds for all of them.
pub fn withheld(plan: &Plan, user: &str, experiment: Option<(&str, f64)>) -> Option<Withheld> {
    let h = &plan.holdouts;
    if h.global_percent > 0.0 && arm(&h.salt, GLOBAL, user, h.global_percent) == Arm::Control {
        return Some(Withheld::Global);
    }
    match experiment {
        Some((id, percent)) if percent > 0.0 && arm(&h.salt, id, user, percent) == Arm::Control => Some(Withheld::Control),
        _ => None,
    }
}

/// Which holdout keeps guidance from a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The global holdout: no guidance at all.
    Global,
    /// The control group of this piece of guidance.
    Control,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_then_fmix64() {
        // FNV-1a 64 reference values (the FNV authors' test vectors).
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"foobar"), 0x8594_4171_f739_67e8);
        // fmix64 maps 0 to 0 and is a bijection; a known value from MurmurHash3.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn draws_are_uniform_and_independent_across_experiments() {
        // 20 000 users, 10 buckets: chi-square with 9 degrees of freedom stays under 27.9
        // (p = 0.001) for a uniform draw; the same for the pair of experiments' 2×2 table.
        let n = 20_000;
        let mut buckets = [0u32; 10];
        let mut both = [[0u32; 2]; 2];
        for i in 0..n {
            let user = ["user-", &i.to_string()].concat();
            let d = draw("acme", "tip:welcome", &user);
            assert!((0.0..1.0).contains(&d));
            buckets[(d * 10.0) as usize] += 1;
            let a = (d < 0.5) as usize;
            let b = (draw("acme", GLOBAL, &user) < 0.5) as usize;
            both[a][b] += 1;
        }
        let expected = n as f64 / 10.0;
        let chi: f64 = buckets.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        assert!(chi < 27.9, "chi-square {chi}: {buckets:?}");
        let q = n as f64 / 4.0;
        let chi2: f64 = both.iter().flatten().map(|&c| (c as f64 - q).powi(2) / q).sum();
        assert!(chi2 < 16.3, "experiments are not independent: {both:?}");
    }

    #[test]
    fn the_salt_experiment_and_user_each_change_the_draw_and_the_separator_matters() {
        let d = draw("s", "global", "u1");
        assert_eq!(d, draw("s", "global", "u1"), "deterministic");
        assert_ne!(d, draw("t", "global", "u1"));
        assert_ne!(d, draw("s", "tip:a", "u1"));
        assert_ne!(d, draw("s", "global", "u2"));
        assert_ne!(draw("ab", "c", "u"), draw("a", "bc", "u"));
    }

    fn plan(holdouts: &str) -> Plan {
        let text = [
            r#"{"version":"1","milestones":[{"id":"v","title":"V","value":true,"condition":{"event":"v"}}],"#,
            holdouts,
            r#""tips":[{"id":"hi","kind":"modal","body":"Hi","controlPercent":50},{"id":"plain","kind":"modal","body":"P"}]}"#,
        ]
        .concat();
        Plan::parse(&text).expect("valid plan")
    }

    #[test]
    fn assignments_cover_the_global_holdout_then_each_tip_with_a_control_group() {
        let p = plan(r#""holdouts":{"salt":"acme","globalPercent":20},"#);
        let (mut global, mut tip_control, mut tip_users) = (0, 0, 0);
        for i in 0..2000 {
            let user = ["u", &i.to_string()].concat();
            let a = assignments(&p, &user);
            assert_eq!(a[0].0, "global");
            if a[0].1 == Arm::Control {
                global += 1;
                assert_eq!(a.len(), 1, "the global holdout is in no other experiment");
                assert_eq!(withheld(&p, &user, Some(("tip:hi", 50.0))), Some(Withheld::Global));
                assert_eq!(withheld(&p, &user, None), Some(Withheld::Global));
            } else {
                assert_eq!(a.len(), 2, "plain has no control group");
                assert_eq!(a[1].0, "tip:hi");
                tip_users += 1;
                let control = a[1].1 == Arm::Control;
                tip_control += control as u32;
                assert_eq!(withheld(&p, &user, Some(("tip:hi", 50.0))), control.then_some(Withheld::Control));
                assert_eq!(withheld(&p, &user, None), None);
            }
        }
        assert!((340..460).contains(&global), "{global} of 2000 held out at 20 %");
        assert!((tip_control as f64 / tip_users as f64 - 0.5).abs() < 0.05);
        let none = plan("");
        assert_eq!(assignments(&none, "u1"), vec![("tip:hi".to_string(), arm("", "tip:hi", "u1", 50.0))]);
    }

    #[test]
    fn surveys_with_a_control_group_are_experiments_after_tips_and_prompts() {
        let text = r#"{"version":"1","milestones":[{"id":"v","title":"V","value":true,"condition":{"event":"v"}}],
            "holdouts":{"salt":"acme","globalPercent":10},
            "tips":[{"id":"hi","kind":"modal","body":"Hi","controlPercent":5}],
            "prompts":[{"id":"inv","milestone":"v","body":"Invite","cta":{"label":"Go","url":"/team"},"controlPercent":5}],
            "surveys":[{"id":"nps","kind":"nps","question":"Q","when":{"path":"/*"},"controlPercent":30},
                       {"id":"all","kind":"csat","question":"Q","when":{"path":"/*"}}]}"#;
        let p = Plan::parse(text).expect("valid plan");
        let (mut asked, mut control) = (0u32, 0u32);
        for i in 0..2000 {
            let user = ["s", &i.to_string()].concat();
            let a = assignments(&p, &user);
            // The oracle: the documented draw, "survey:nps" at 30 %, after the global holdout at 10 %.
            if draw("acme", "global", &user) < 0.1 {
                assert_eq!(a, vec![("global".to_string(), Arm::Control)]);
                continue;
            }
            let ids: Vec<&str> = a.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, ["global", "tip:hi", "prompt:inv", "survey:nps"], "a survey without a control group is in no experiment");
            let in_control = draw("acme", "survey:nps", &user) < 0.3;
            assert_eq!(a[3].1, if in_control { Arm::Control } else { Arm::Treatment });
            assert_eq!(withheld(&p, &user, Some(("survey:nps", 30.0))), in_control.then_some(Withheld::Control));
            asked += 1;
            control += in_control as u32;
        }
        let share = control as f64 / asked as f64;
        assert!((share - 0.3).abs() < 0.04, "{control} of {asked} in the survey's control group at 30 %");
    }
}
