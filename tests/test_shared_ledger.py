"""A ledger shared across drivers, without Ray: the claim book, a policy learning the others'
counts, and several drivers (policies) placing through the submit layer's claim loop against one
book, under churn, releases, refused submissions and drivers that end. The real holder (a Ray
actor) and two real driver processes are tested in tests/test_policies_cluster.py."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import placement.shared as shared
from placement import errors
from placement.errors import PlacementError
from placement.policies import AntiAffinity, RoundRobin
from placement.policies.claims import ClaimBook
from placement.snapshot import ClusterSnapshot

from .thoroughness import examples


def nodes(count: int, first: int = 0) -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"}
                                       for i in range(first, first + count)])


def test_a_claim_is_refused_at_the_limit_and_repeating_one_is_harmless():
    book = ClaimBook()
    assert book.claim("a/1", owner="a", job="j1", node="n0", limit=2) == (True, {})
    assert book.claim("a/1", owner="a", job="j1", node="n0", limit=1) == (True, {})  # retried
    assert book.claim("b/1", owner="b", job="j2", node="n0", limit=2) == (True, {"n0": 1})
    assert book.claim("b/2", owner="b", job="j2", node="n0", limit=2) == (False, {"n0": 1})
    assert book.claim("b/2", owner="b", job="j2", node="n0", limit=None)[0]  # soft: no limit
    assert book.counts == {"n0": 3} and book.others("b") == {"n0": 1}
    assert ClaimBook(book.claims).others("b") == {"n0": 1}  # a restarted holder's book
    assert book.forget_jobs({"j2"}) == ["b/1", "b/2"] and book.counts == {"n0": 1}
    assert not book.release("b/1") and book.release("a/1") and book.counts == {}


def test_the_others_count_against_the_cap_and_free_their_slots_when_they_go_down():
    web = AntiAffinity(shared="web")
    web.learn_others("web", {"n0": 1, "n1": 1})
    assert web.decide(nodes(3)).node_name == "node2"
    with pytest.raises(PlacementError) as full:
        web.decide(nodes(3))
    assert full.value.rule == errors.SPREAD_EXHAUSTED
    assert "2 placed by other drivers sharing 'web'" in full.value.detail
    web.learn_others("web", {"n1": 1})  # the other driver's replica on n0 ended
    assert web.decide(nodes(3)).node_name == "node0"


def test_shared_is_configuration_checked_before_anything_runs():
    web = AntiAffinity(max_per_node=2, shared="web")
    assert web.clone().shared == "web" and "shared='web'" in repr(web)
    for bad in ("", "a b", "x" * 64, 3):
        with pytest.raises(ValueError, match="shared must be a name"):
            AntiAffinity(shared=bad)
    for conflicting in ({"topology": "zone"}, {"max_skew": 1}):
        with pytest.raises(ValueError, match="drop topology= and max_skew="):
            AntiAffinity(shared="web", **conflicting)


@pytest.mark.parametrize("how", ["strict", "soft", "fallback"])
def test_a_refusal_or_a_fallback_looks_again_at_the_others_counts_first(how):
    book = ClaimBook()
    drivers = [Driver(f"j{i}", book, strict=how != "soft") for i in range(2)]
    by_policy = {id(d.policy): d for d in drivers}
    view = nodes(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shared, "ledger_of", lambda policy, name: ledger_for(policy, by_policy))

        def place(driver):
            policy = driver.policy | RoundRobin() if how == "fallback" else driver.policy
            decision = shared.propose_shared(policy, lambda _: policy.propose(view),
                                             len(view.live))
            policy.commit(decision)
            return decision

        mine, theirs = place(drivers[0]), place(drivers[1])  # node0, then node1 (after a retry)
        assert (mine.node_name, theirs.node_name) == ("node0", "node1")
        if how == "strict":
            with pytest.raises(PlacementError):  # both full, as the first driver learned
                place(drivers[0])
        else:  # both full: soft reuses a node, the fallback places by round robin
            assert place(drivers[0]).fallback
        drivers[1].policy.release(theirs)  # the other driver's replica ended
        again = place(drivers[0])
        assert (again.node_name, again.fallback) == ("node1", False)


def ledger_for(policy, by_policy):
    """The driver's ledger of ``policy`` (its shared policy, or a fallback with it inside)."""
    return next(by_policy[id(m)].ledger for m in policy.members() if id(m) in by_policy)


class Driver:
    """One driver process: its own policy, its job id, its committed placements."""

    def __init__(self, job: str, book: ClaimBook, **config) -> None:
        self.job = job
        self.policy = AntiAffinity(shared="s", **config)
        self.ledger = BookLedger(book, job)
        self.policy.add_release_listener(self.ledger.unclaim)
        self.placed: list = []


class BookLedger:
    """The driver's side of the holder, calling the book directly (the holder runs one call at
    a time: so does this)."""

    def __init__(self, book: ClaimBook, job: str) -> None:
        self.book, self.job, self.owner, self.claims = book, job, f"owner-{job}", {}

    def claim(self, decision, limit):
        claim_id = f"{self.owner}/{decision.ticket}"
        held, others = self.book.claim(claim_id, owner=self.owner, job=self.job,
                                       node=decision.node.node_id, limit=limit)
        if held:
            self.claims[decision.ticket] = claim_id
        return held, others

    def unclaim(self, decision) -> None:
        claim_id = self.claims.pop(decision.ticket, None)
        if claim_id is not None:
            self.book.release(claim_id)

    def others(self):
        return self.book.others(self.owner)


STEP = st.tuples(st.sampled_from(["place", "place", "place", "refused", "release", "release",
                                  "end", "shrink", "grow"]),
                 st.integers(0, 2), st.integers(0, 99))


@settings(max_examples=examples(300), deadline=None)
@given(steps=st.lists(STEP, max_size=40), cap=st.integers(1, 2), strict=st.booleans(),
       fallback=st.booleans())
def test_drivers_sharing_a_ledger_never_exceed_the_cap_and_refuse_only_when_it_is_reached(
        steps, cap, strict, fallback):
    book = ClaimBook()
    drivers = [Driver(f"j{i}", book, max_per_node=cap, strict=strict) for i in range(3)]
    by_policy = {id(d.policy): d for d in drivers}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shared, "ledger_of", lambda policy, name: ledger_for(policy, by_policy))
        run_drivers(steps, cap, strict, fallback, book, drivers, by_policy)


def run_drivers(steps, cap, strict, fallback, book, drivers, by_policy) -> None:
    views = [nodes(2) for _ in drivers]  # each driver's own snapshot (grown and shrunk)
    ended = 0
    for action, who, pick in steps:
        driver, view = drivers[who], views[who]
        policy = driver.policy | RoundRobin() if fallback else driver.policy
        if action in ("place", "refused"):
            try:
                decision = shared.propose_shared(
                    policy, lambda _, policy=policy, view=view: policy.propose(view),
                    len(view.live))
            except PlacementError as refusal:
                assert strict and not fallback and refusal.rule == errors.SPREAD_EXHAUSTED
                full = [n.node_id for n in view.live if book.counts.get(n.node_id, 0) >= cap]
                assert len(full) == len(view.live), "refused while a node had room"
                continue
            if action == "refused":  # Ray refused the submission: nothing stays claimed
                shared.unclaim(policy, decision)
                policy.rollback(decision)
            else:
                policy.commit(decision)
                if decision.fallback:  # reused a node (soft) or fell back: only when all are full
                    left = [n.node_id for n in view.live if book.counts.get(n.node_id, 0) < cap]
                    assert not left, f"fell back while {left} had room"
                else:
                    assert book.counts.get(decision.node.node_id, 0) <= cap
                if decision.claim is not None:  # the shared member decided
                    driver.placed.append((policy, decision))
        elif action == "release" and driver.placed:
            owner, decision = driver.placed.pop(pick % len(driver.placed))
            owner.release(decision)
        elif action == "end" and ended < 2:  # the driver exits; the holder forgets its job
            book.forget_jobs({driver.job})
            ended += 1
            drivers[who] = replacement = Driver(f"j{who}-{ended}", book, max_per_node=cap,
                                                strict=strict)
            by_policy[id(replacement.policy)] = replacement
        elif action == "shrink" and len(view.live) > 1:
            views[who] = nodes(len(view.live) - 1, first=1)
        elif action == "grow":
            views[who] = nodes(len(view.live) + 1)
        if strict:  # every claim held within the cap, whatever each driver believed
            assert all(count <= cap for count in book.counts.values()), book.counts
        # The book holds exactly the live drivers' placements still running.
        expected = sorted(decision.node.node_id for d in drivers for _, decision in d.placed)
        assert sorted(c.node for c in book.claims.values()) == expected


def test_a_strict_shared_member_behind_another_keeps_its_cap_in_a_race():
    """A fallback marks a later member's decision a fallback: the claim must still be capped
    (another driver places between this driver's look at the counts and its claim)."""
    book = ClaimBook()
    view = nodes(2)

    def make(job):
        driver = Driver(job, book)
        return driver, AntiAffinity(where={"zone": "none"}) | driver.policy

    (a, first), (b, second) = make("a"), make("b")
    by_policy = {id(a.policy): a, id(b.policy): b}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shared, "ledger_of", lambda policy, name: ledger_for(policy, by_policy))
        proposed = []

        def racing(_):
            decision = first.propose(view)
            proposed.append(decision)
            if len(proposed) == 2:  # the other driver takes the node meanwhile
                second.commit(shared.propose_shared(second, lambda _: second.propose(view), 2))
            return decision

        first.commit(shared.propose_shared(first, racing, 2))
    assert all(count <= 1 for count in book.counts.values()), book.counts


def test_a_claim_whose_answer_was_lost_is_given_back(monkeypatch):
    ledger, released = shared.SharedLedger("web"), []

    def no_answer(*_):
        raise PlacementError(errors.SHARED_UNREACHABLE, "no answer", "-")

    monkeypatch.setattr(ledger, "_call", no_answer)
    monkeypatch.setattr(ledger, "_release", released.append)
    monkeypatch.setattr(shared.ray, "get_runtime_context",
                        lambda: type("Context", (), {"get_job_id": lambda self: "01"})())
    decision = AntiAffinity().decide(nodes(1))
    with pytest.raises(PlacementError):
        ledger.claim(decision, 1)
    assert released == [f"{ledger.owner}/{decision.ticket}"]


def test_an_unanswered_look_at_the_counts_keeps_the_real_refusal():
    from placement.policies.claims import hold_across_drivers

    def refuse():
        raise PlacementError(errors.RESOURCES_EXCEED_NODES, "8 GPU asked", "-")

    def unreachable():
        raise PlacementError(errors.SHARED_UNREACHABLE, "no answer", "-")

    with pytest.raises(PlacementError) as refusal:
        hold_across_drivers(refuse, lambda _: True, lambda _: None, unreachable, attempts=3)
    assert refusal.value.rule == errors.RESOURCES_EXCEED_NODES


def test_a_holder_that_dies_twice_is_a_placement_error_and_one_made_again_is_asked(monkeypatch):
    from ray.exceptions import RayActorError

    ledger, made = shared.SharedLedger("web"), []

    class Holder:
        others = type("Method", (), {"remote": staticmethod(lambda *args: "ref")})()

    def make() -> Holder:
        made.append(1)
        return Holder()

    monkeypatch.setattr(ledger, "holder", lambda: ledger._holder or make())
    answers = iter([RayActorError(), {"n1": 1}])

    def get(ref, timeout):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(shared.ray, "get", get)
    assert ledger.others() == {"n1": 1} and len(made) == 2  # made again after it died
    answers = iter([RayActorError(), RayActorError()])
    with pytest.raises(PlacementError) as lost:
        ledger.others()
    assert lost.value.rule == errors.SHARED_UNREACHABLE and "died twice" in lost.value.detail
