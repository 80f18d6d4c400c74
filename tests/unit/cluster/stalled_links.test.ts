/** When a node drops an outgoing peer link that looks up but carries nothing (stalled_links.ts). */
import { expect, test } from "bun:test";
import { silentRedialMs, StalledLinks } from "../../../lib/cluster/stalled_links.ts";

const timing = { silenceMs: 1_000, silentRedialMs: 5_000 };

test("a peer that hears nothing gets a new link once the current one has been up a silence's length", () => {
  const links = new StalledLinks(timing);
  links.connected(2, 10_000);
  // Its word may predate the link: not yet.
  expect(links.peerHearsNothing(2, 10_500, true)).toBe(false);
  expect(links.peerHearsNothing(2, 11_000, true)).toBe(true);
  // Dropped now: the same complaint right after does not drop the next link at once.
  expect(links.peerHearsNothing(2, 11_100, true)).toBe(false);
  // A link that is down is being dialed already.
  expect(links.peerHearsNothing(2, 20_000, false)).toBe(false);
  links.connected(2, 20_000);
  expect(links.peerHearsNothing(2, 21_000, true)).toBe(true);
  // Other peers are counted apart.
  links.connected(3, 20_900);
  expect(links.peerHearsNothing(3, 21_000, true)).toBe(false);
});

test("a peer this node does not hear gets a new link at the slower pace", () => {
  const links = new StalledLinks(timing);
  links.connected(2, 0);
  expect(links.peerSilent(2, 4_999, true)).toBe(false);
  expect(links.peerSilent(2, 5_000, true)).toBe(true);
  expect(links.peerSilent(2, 9_999, true)).toBe(false);
  expect(links.peerSilent(2, 10_000, true)).toBe(true);
  expect(links.peerSilent(2, 20_000, false)).toBe(false);
});

test("a link up before anyone watched it counts from the first question", () => {
  const links = new StalledLinks(timing);
  expect(links.peerHearsNothing(4, 50_000, true)).toBe(false);
  expect(links.peerHearsNothing(4, 51_000, true)).toBe(true);
  expect(links.peerSilent(5, 60_000, true)).toBe(false);
  expect(links.peerSilent(5, 65_000, true)).toBe(true);
});

test("the slower pace is at least 5 s and at least two election timeouts", () => {
  expect(silentRedialMs(2_000)).toBe(5_000);
  expect(silentRedialMs(4_000)).toBe(8_000);
});
