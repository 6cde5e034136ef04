//! Where a floating tip goes: beside its target, on the requested side, flipped to another side
//! when it does not fit, and shifted along that side to stay inside the viewport.
//!
//! Pure geometry in viewport (CSS pixel) coordinates, so the browser layer only reads rects and
//! writes the result. Everything is `position: fixed` on the browser side: the target's
//! `getBoundingClientRect()` is already in viewport coordinates whatever its scroll containers,
//! transforms or fixed/sticky parents, which is why this module needs no knowledge of them.

pub use super::plan::Placement as Side;

/// Geometry helpers on the plan's placement (`Auto` picks the side with the most room).
impl Side {
    fn opposite(self) -> Side {
        match self {
            Side::Top => Side::Bottom,
            Side::Bottom => Side::Top,
            Side::Left => Side::Right,
            Side::Right => Side::Left,
            Side::Auto => Side::Auto,
        }
    }

    fn vertical(self) -> bool {
        matches!(self, Side::Top | Side::Bottom)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn new(x: f64, y: f64, w: f64, h: f64) -> Rect {
        Rect { x, y, w, h }
    }

    /// True when any part of the rect is inside a `vw`×`vh` viewport.
    pub fn visible_in(&self, vw: f64, vh: f64) -> bool {
        self.x < vw && self.y < vh && self.x + self.w > 0.0 && self.y + self.h > 0.0
    }
}

/// The computed position of a floating tip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    /// Top-left corner of the tip, viewport coordinates.
    pub x: f64,
    pub y: f64,
    /// The side actually used (never `Auto`).
    pub side: Side,
    /// Where the arrow sits along the tip's edge that faces the target, from the tip's left (for
    /// top/bottom) or top (for left/right) edge, so it keeps pointing at the target's centre
    /// after the tip was shifted.
    pub arrow: f64,
}

/// Distance kept between a tip and the viewport's edges.
pub const MARGIN: f64 = 8.0;
/// Distance between the target and the tip (room for the arrow).
pub const GAP: f64 = 12.0;
/// The arrow never comes closer than this to a corner of the tip (rounded corners).
const ARROW_INSET: f64 = 14.0;

/// Places a `w`×`h` tip beside `target` inside a `vw`×`vh` viewport.
pub fn place(target: Rect, w: f64, h: f64, vw: f64, vh: f64, wanted: Side) -> Placed {
    // Room on each side, minus the gap and the margin.
    let room = |side: Side| match side {
        Side::Top => target.y,
        Side::Bottom => vh - (target.y + target.h),
        Side::Left => target.x,
        Side::Right => vw - (target.x + target.w),
        Side::Auto => 0.0,
    } - GAP
        - MARGIN;
    let needs = |side: Side| if side.vertical() { h } else { w };
    let fits = |side: Side| room(side) >= needs(side);

    let side = match wanted {
        Side::Auto => {
            // Below first (reads naturally, does not cover what led to the target), then above,
            // then the sides; if nothing fits, the side with the most room relative to the need.
            [Side::Bottom, Side::Top, Side::Right, Side::Left].into_iter().find(|s| fits(*s)).unwrap_or_else(|| roomiest(&room, &needs))
        }
        s if fits(s) => s,
        s if fits(s.opposite()) => s.opposite(),
        s => {
            let (a, b) = if s.vertical() { (Side::Right, Side::Left) } else { (Side::Bottom, Side::Top) };
            if fits(a) {
                a
            } else if fits(b) {
                b
            } else {
                roomiest(&room, &needs)
            }
        }
    };

    let cx = target.x + target.w / 2.0;
    let cy = target.y + target.h / 2.0;
    let (x, y) = match side {
        Side::Top => (cx - w / 2.0, target.y - GAP - h),
        Side::Bottom => (cx - w / 2.0, target.y + target.h + GAP),
        Side::Left => (target.x - GAP - w, cy - h / 2.0),
        _ => (target.x + target.w + GAP, cy - h / 2.0),
    };
    // Shift along the side (and, when nothing fits at all, across it) into the viewport.
    let x = clamp(x, MARGIN, vw - MARGIN - w);
    let y = clamp(y, MARGIN, vh - MARGIN - h);
    let arrow = if side.vertical() { clamp(cx - x, ARROW_INSET, w - ARROW_INSET) } else { clamp(cy - y, ARROW_INSET, h - ARROW_INSET) };
    Placed { x, y, side, arrow }
}

fn roomiest(room: &impl Fn(Side) -> f64, needs: &impl Fn(Side) -> f64) -> Side {
    let mut best = Side::Bottom;
    let mut best_ratio = f64::MIN;
    for s in [Side::Bottom, Side::Top, Side::Right, Side::Left] {
        let ratio = room(s) / needs(s).max(1.0);
        if ratio > best_ratio {
            best = s;
            best_ratio = ratio;
        }
    }
    best
}

/// Clamps to `[lo, hi]`, preferring `lo` when the range is empty (a tip wider than the
/// viewport starts at the leading margin rather than overflowing both edges).
fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    if v > hi {
        v.min(hi).max(lo)
    } else {
        v.max(lo)
    }
}

/// Where a hotspot beacon of `size` goes: on the target's top-right corner (top-left in
/// right-to-left pages), kept inside the viewport.
pub fn beacon(target: Rect, size: f64, vw: f64, vh: f64, rtl: bool) -> (f64, f64) {
    let x = if rtl { target.x } else { target.x + target.w } - size / 2.0;
    let y = target.y - size / 2.0;
    (clamp(x, 0.0, vw - size), clamp(y, 0.0, vh - size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VW: f64 = 1000.0;
    const VH: f64 = 800.0;

    fn inside(p: &Placed, w: f64, h: f64) -> bool {
        p.x >= MARGIN && p.y >= MARGIN && p.x + w <= VW - MARGIN && p.y + h <= VH - MARGIN
    }

    #[test]
    fn each_side_when_there_is_room() {
        let t = Rect::new(450.0, 380.0, 100.0, 40.0);
        let top = place(t, 200.0, 100.0, VW, VH, Side::Top);
        assert_eq!((top.side, top.x, top.y), (Side::Top, 400.0, 380.0 - GAP - 100.0));
        let bottom = place(t, 200.0, 100.0, VW, VH, Side::Bottom);
        assert_eq!((bottom.side, bottom.y), (Side::Bottom, 420.0 + GAP));
        let left = place(t, 200.0, 100.0, VW, VH, Side::Left);
        assert_eq!((left.side, left.x, left.y), (Side::Left, 450.0 - GAP - 200.0, 350.0));
        let right = place(t, 200.0, 100.0, VW, VH, Side::Right);
        assert_eq!((right.side, right.x), (Side::Right, 550.0 + GAP));
        for p in [top, bottom] {
            assert_eq!(p.arrow, 100.0, "arrow at the target's centre");
        }
    }

    #[test]
    fn flips_to_the_opposite_side_when_the_wanted_side_is_too_small() {
        // A target at the very top: no room above.
        let t = Rect::new(450.0, 10.0, 100.0, 30.0);
        let p = place(t, 200.0, 100.0, VW, VH, Side::Top);
        assert_eq!(p.side, Side::Bottom);
        assert!(inside(&p, 200.0, 100.0));
        // At the right edge: no room on the right.
        let t = Rect::new(950.0, 400.0, 40.0, 30.0);
        assert_eq!(place(t, 200.0, 100.0, VW, VH, Side::Right).side, Side::Left);
    }

    #[test]
    fn falls_back_to_a_perpendicular_side() {
        // A full-width banner wanting "left": neither left nor right has room, so the tip goes
        // below it (or above).
        let t = Rect::new(0.0, 300.0, VW, 40.0);
        let p = place(t, 300.0, 100.0, VW, VH, Side::Left);
        assert_eq!(p.side, Side::Bottom);
        assert!(inside(&p, 300.0, 100.0));
    }

    #[test]
    fn shifts_along_the_side_to_stay_in_the_viewport() {
        // Target near the left edge: a centred tip would start off-screen.
        let t = Rect::new(5.0, 300.0, 30.0, 30.0);
        let p = place(t, 300.0, 100.0, VW, VH, Side::Bottom);
        assert_eq!(p.x, MARGIN);
        assert!(inside(&p, 300.0, 100.0));
        // The arrow still points at the target's centre (x = 20), within the rounded corner.
        assert_eq!(p.arrow, ARROW_INSET.max(20.0 - MARGIN));
        // Near the right edge.
        let t = Rect::new(980.0, 300.0, 20.0, 30.0);
        let p = place(t, 300.0, 100.0, VW, VH, Side::Top);
        assert_eq!(p.x, VW - MARGIN - 300.0);
        assert_eq!(p.arrow, 300.0 - ARROW_INSET);
    }

    #[test]
    fn auto_prefers_below_then_the_roomiest_side() {
        let t = Rect::new(450.0, 100.0, 100.0, 40.0);
        assert_eq!(place(t, 200.0, 100.0, VW, VH, Side::Auto).side, Side::Bottom);
        let t = Rect::new(450.0, 700.0, 100.0, 40.0);
        assert_eq!(place(t, 200.0, 100.0, VW, VH, Side::Auto).side, Side::Top);
        // Tall target filling the height: only the sides have room; left has more.
        let t = Rect::new(700.0, 0.0, 100.0, VH);
        assert_eq!(place(t, 200.0, 100.0, VW, VH, Side::Auto).side, Side::Left);
    }

    #[test]
    fn nothing_fits_stays_on_screen() {
        // A tiny viewport with a target in the middle: the tip overlaps but stays visible.
        let t = Rect::new(140.0, 140.0, 20.0, 20.0);
        let p = place(t, 250.0, 250.0, 300.0, 300.0, Side::Auto);
        assert!(p.x >= MARGIN && p.y >= MARGIN);
        assert!(p.x + 250.0 <= 300.0 - MARGIN + 0.001 && p.y + 250.0 <= 300.0 - MARGIN + 0.001);
        // Wider than the viewport: starts at the leading margin.
        let p = place(t, 500.0, 50.0, 300.0, 300.0, Side::Bottom);
        assert_eq!(p.x, MARGIN);
    }

    #[test]
    fn targets_partly_off_screen() {
        // Scrolled so the target is half above the viewport: the tip goes below and stays inside.
        let t = Rect::new(400.0, -20.0, 100.0, 40.0);
        let p = place(t, 200.0, 80.0, VW, VH, Side::Top);
        assert_eq!(p.side, Side::Bottom);
        assert!(inside(&p, 200.0, 80.0));
        assert!(t.visible_in(VW, VH));
        assert!(!Rect::new(400.0, -60.0, 100.0, 40.0).visible_in(VW, VH));
        assert!(!Rect::new(1001.0, 10.0, 10.0, 10.0).visible_in(VW, VH));
    }

    #[test]
    fn beacon_sits_on_the_corner_and_mirrors_for_rtl() {
        let t = Rect::new(100.0, 100.0, 80.0, 30.0);
        assert_eq!(beacon(t, 20.0, VW, VH, false), (170.0, 90.0));
        assert_eq!(beacon(t, 20.0, VW, VH, true), (90.0, 90.0));
        // At the viewport's corner it is pulled inside.
        assert_eq!(beacon(Rect::new(990.0, 0.0, 10.0, 10.0), 20.0, VW, VH, false), (980.0, 0.0));
    }
}
