//! The event vocabulary: the names and props of the events onramp itself emits (milestones,
//! tips, metrics; the `type` of each is [`super::wire::EventType`]), defined once and used by
//! the SDK that sends them and the collector that reads them (analytics, reports, webhooks).
//! docs/EVENTS.md is their reference; `every_name_is_documented` keeps the two in step.
//!
//! Plain `&'static str` constants: they cost the wasm nothing beyond the strings it already
//! sends. 
/// Events of type `milestone`. Besides these, a plan's own milestones are reported under their
/// id (a plan may not use these names: [`super::plan::RESERVED_IDS`]).
pub mod milestone {
    /// Every required milestone is reached.
    pub const ONBOARDING_COMPLETED: &str = "onboarding_completed";
    /// The value milestone is reached: `sinceSignupMs` is the user's time to value.
    pub const TIME_TO_VALUE: &str = "time_to_value";
}

/// Events of type `metric`: seed metrics the SDK measures.
pub mod metric {
    /// First activity to last before a 30-minute gap; `valueMs`.
    pub const FIRST_SESSION_LENGTH: &str = "first_session_length";
    /// First visit to the next session's start; `valueMs`.
    pub const RETURN_INTERVAL: &str = "return_interval";
    /// Required milestones reached ÷ required, each time one is reached; `value`.
    pub const CORE_TASK_COMPLETION: &str = "core_task_completion";
    /// The SDK gave up on events; `count` and `reason`.
    pub const EVENTS_DROPPED: &str = "events_dropped";
}

/// Events of type `tip`: a tip surface changed.
pub mod tip {
    pub const SHOWN: &str = "tip_shown";
    pub const DISMISSED: &str = "tip_dismissed";
    pub const SNOOZED: &str = "tip_snoozed";
    pub const CTA_CLICKED: &str = "tip_cta_clicked";
    /// The tip's target was gone past the grace period; `selector`.
    pub const TARGET_MISSING: &str = "tip_target_missing";
    pub const TOUR_STEP_COMPLETED: &str = "tour_step_completed";
    pub const CHECKLIST_OPENED: &str = "checklist_opened";
    /// The user marked a customer milestone done from the checklist; `milestone`.
    pub const CUSTOMER_MILESTONE_MARKED: &str = "customer_milestone_marked";
}

/// Events of type `survey`: a micro-survey surface changed (docs/SURVEYS.md).
pub mod survey {
    pub const SHOWN: &str = "survey_shown";
    /// `score` (absent for open-text questions), `group`, `text` (plain text, ≤ 1 000 chars).
    pub const ANSWERED: &str = "survey_answered";
    pub const DISMISSED: &str = "survey_dismissed";
    /// "Ask me later".
    pub const SNOOZED: &str = "survey_snoozed";
}

/// Events of type `prompt`: a growth prompt at a milestone (docs/EXPERIMENTS.md).
pub mod prompt {
    pub const SHOWN: &str = "prompt_shown";
    /// The call to action was taken; `action`.
    pub const ACTION: &str = "prompt_action";
    /// "Not now".
    pub const DISMISSED: &str = "prompt_dismissed";
}

/// Events of type `experiment`.
pub mod experiment {
    /// Sent once per user and experiment at identify; `experiment`, `arm` (`control` | `treatment`).
    pub const ASSIGNED: &str = "experiment_assigned";
}

/// Prop (and trait) keys of those events.
pub mod prop {
    /// Milliseconds from sign-up (or first-seen standing in) to the event; never negative.
    pub const SINCE_SIGNUP_MS: &str = "sinceSignupMs";
    /// False when first-seen stands in for an unknown sign-up time.
    pub const SIGNUP_KNOWN: &str = "signupKnown";
    /// A milestone event: whether it is the value milestone. A metric: its ratio.
    pub const VALUE: &str = "value";
    /// A duration metric's value.
    pub const VALUE_MS: &str = "valueMs";
    /// A milestone's kind (`feature` | `customer`).
    pub const KIND: &str = "kind";
    pub const PLAN_VERSION: &str = "planVersion";
    /// The milestone a `time_to_value` or tip event is about.
    pub const MILESTONE: &str = "milestone";
    pub const TIP_ID: &str = "tipId";
    /// A tour's step (0-based).
    pub const STEP: &str = "step";
    pub const SELECTOR: &str = "selector";
    /// `core_task_completion`: required milestones reached, and required in all.
    pub const REACHED: &str = "reached";
    pub const REQUIRED: &str = "required";
    /// `events_dropped`.
    pub const COUNT: &str = "count";
    pub const REASON: &str = "reason";
    /// The identify trait with the user's sign-up time (normalised to Unix ms at ingest).
    pub const SIGNED_UP_AT: &str = "signedUpAt";
    /// Survey events: the survey's id in the plan, and its kind (`csat` | `nps` | `ces` | `question`).
    pub const SURVEY_ID: &str = "surveyId";
    pub const SURVEY_KIND: &str = "surveyKind";
    /// `survey_answered`: the answer on the survey's scale (csat 1–3 faces or 1–5, nps 0–10, ces 1–7).
    pub const SCORE: &str = "score";
    /// `survey_answered`: nps `detractor` | `passive` | `promoter`; csat `unhappy` | `neutral` | `happy`.
    pub const GROUP: &str = "group";
    /// `survey_answered`: the user's own words.
    pub const TEXT: &str = "text";
    /// Prompt events: the prompt's id in the plan; `prompt_action`: which action.
    pub const PROMPT_ID: &str = "promptId";
    pub const ACTION: &str = "action";
    /// `experiment_assigned`: the experiment (`global` for the global holdout) and the user's arm.
    pub const EXPERIMENT: &str = "experiment";
    pub const ARM: &str = "arm";
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_documented() {
        let doc = include_str!("../../docs/EVENTS.md");
        let names = [
            milestone::ONBOARDING_COMPLETED,
            milestone::TIME_TO_VALUE,
            metric::FIRST_SESSION_LENGTH,
            metric::RETURN_INTERVAL,
            metric::CORE_TASK_COMPLETION,
            metric::EVENTS_DROPPED,
            tip::SHOWN,
            tip::DISMISSED,
            tip::SNOOZED,
            tip::CTA_CLICKED,
            tip::TARGET_MISSING,
            tip::TOUR_STEP_COMPLETED,
            tip::CHECKLIST_OPENED,
            tip::CUSTOMER_MILESTONE_MARKED,
            prop::SINCE_SIGNUP_MS,
            prop::SIGNUP_KNOWN,
            prop::VALUE,
            prop::VALUE_MS,
            prop::KIND,
            prop::PLAN_VERSION,
            prop::MILESTONE,
            prop::TIP_ID,
            prop::STEP,
            prop::SELECTOR,
            prop::REACHED,
            prop::REQUIRED,
            prop::COUNT,
            prop::REASON,
            prop::SIGNED_UP_AT,
            survey::SHOWN,
            survey::ANSWERED,
            survey::DISMISSED,
            survey::SNOOZED,
            prompt::SHOWN,
            prompt::ACTION,
            prompt::DISMISSED,
            experiment::ASSIGNED,
            prop::SURVEY_ID,
            prop::SURVEY_KIND,
            prop::SCORE,
            prop::GROUP,
            prop::TEXT,
            prop::PROMPT_ID,
            prop::ACTION,
            prop::EXPERIMENT,
            prop::ARM,
        ];
        for name in names {
            assert!(doc.contains(&format!("`{name}`")), "{name} is not in docs/EVENTS.md");
        }
    }
}
