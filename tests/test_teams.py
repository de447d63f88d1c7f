"""Team namespaces, the pure part: the ``team_namespaces`` setting, a user's team and namespace,
a posted team choice, where a legacy home keeps the server, and the form's team section."""

import pytest
from traitlets import TraitError
from traitlets.config import Config

from ptjaas_spawner import teams
from ptjaas_spawner.teams import Team, TeamChoiceError, TeamConfigError

NS = {"vision": "jhub-team-vision", "nlp": "jhub-team-nlp"}
HUB = "jhub"


def test_templates_expand_with_the_group_name():
    assert teams.expand_team_namespaces({"vision": "jhub-team-{group}", "nlp": "research-nlp"}) == {
        "vision": "jhub-team-vision", "nlp": "research-nlp"}


@pytest.mark.parametrize("value,expected", [
    ({"Vision Team": "jhub-team-{group}"}, "c.PtjaasSpawner.team_namespaces['Vision Team']: 'jhub-team-Vision Team' "
                                           "is not a valid namespace name"),
    ({"vision": "jhub-{team}"}, "c.PtjaasSpawner.team_namespaces['vision']: 'jhub-{team}' uses ['team']"),
    ({"vision": 3}, "c.PtjaasSpawner.team_namespaces['vision'] must be a namespace name"),
    ({"vision": "x" * 64}, "longer than 63 characters"),
    (["vision"], "c.PtjaasSpawner.team_namespaces must be a dict"),
    ({"vision": "jhub-{group"}, "c.PtjaasSpawner.team_namespaces['vision']"),
])
def test_invalid_settings_name_the_key(value, expected):
    with pytest.raises(TeamConfigError) as e:
        teams.expand_team_namespaces(value)
    assert expected in str(e.value)


def test_a_group_that_does_not_fit_a_template_gets_a_hint():
    with pytest.raises(TeamConfigError, match="give the namespace explicitly"):
        teams.expand_team_namespaces({"Vision": "jhub-team-{group}"})


def test_teams_and_user_namespaces_exclude_each_other():
    with pytest.raises(TeamConfigError, match="enable_user_namespaces"):
        teams.check_team_config({"vision": "v"}, enable_user_namespaces=True)
    assert teams.check_team_config({}, enable_user_namespaces=True) == {}


def test_the_spawner_setting_is_validated_when_set():
    from ptjaas_spawner.spawner import PtjaasSpawner

    cfg = Config()
    cfg.PtjaasSpawner.team_namespaces = {"vision": "Jhub_Vision"}

    class Probe(PtjaasSpawner):
        def __init__(self, **kw):
            from traitlets.config import Configurable

            Configurable.__init__(self, **kw)

    with pytest.raises(TraitError, match=r"team_namespaces\['vision'\]: 'Jhub_Vision' is not a valid namespace"):
        Probe(config=cfg)


def test_a_member_of_one_team_runs_in_its_namespace():
    assert teams.resolve_team(NS, ["vision", "staff"], None, HUB) == Team("vision", "jhub-team-vision")


def test_a_user_in_no_team_runs_in_the_hub_namespace():
    assert teams.resolve_team(NS, ["staff"], None, HUB) == Team(None, HUB)


def test_a_member_of_two_teams_chooses_and_otherwise_keeps_the_last():
    groups = ["vision", "nlp"]
    assert teams.resolve_team(NS, groups, "vision", HUB).namespace == "jhub-team-vision"
    assert teams.resolve_team(NS, groups, "nlp", HUB).namespace == "jhub-team-nlp"
    assert teams.resolve_team(NS, groups, None, HUB, last="vision").group == "vision"
    assert teams.resolve_team(NS, groups, None, HUB).group == "nlp"  # first alphabetically
    # a last team the user has left no longer applies
    assert teams.resolve_team(NS, ["nlp"], None, HUB, last="vision").group == "nlp"


@pytest.mark.parametrize("groups,requested,expected", [
    (["nlp"], "vision", "You are not a member of team 'vision'. Your teams: nlp."),
    (["staff"], "vision", "nor of any team"),
    (["vision"], ["vision"], "must be a string"),
    (["vision"], "x" * 5000, "Server option 'team' is too long (5000 characters, at most 256): 'xxx"),
])
def test_a_forged_team_is_refused_clearly(groups, requested, expected):
    with pytest.raises(TeamChoiceError) as e:
        teams.resolve_team(NS, groups, requested, HUB)
    assert expected in str(e.value)
    assert len(str(e.value)) < 200  # bounded, whatever was posted


def test_a_legacy_home_in_the_hub_namespace_keeps_the_server_there():
    vision = Team("vision", "jhub-team-vision")
    p = teams.placement(vision, HUB, home_namespace=HUB)
    assert p.namespace == HUB and p.legacy_home
    assert "jhub-team-vision" in p.note and "Nothing is lost" in p.note
    # once an admin has moved it, the team namespace applies
    assert teams.placement(vision, HUB, HUB, migrated=True).namespace == "jhub-team-vision"
    # no home yet, or a home in a team namespace: the chosen team's namespace
    assert teams.placement(vision, HUB, None).namespace == "jhub-team-vision"
    assert teams.placement(vision, HUB, "jhub-team-nlp").namespace == "jhub-team-vision"
    assert teams.placement(Team(None, HUB), HUB, HUB).namespace == HUB


def test_team_option_is_separated_from_the_catalog_options():
    assert teams.team_from_options({"team": "vision", "size": "s"}) == "vision"
    assert teams.without_team({"team": "vision", "size": "s"}) == {"size": "s"}
    assert teams.team_from_formdata({"team": ["nlp"]}) == "nlp"
    assert teams.team_from_formdata({}) is None


def test_form_offers_only_the_users_teams_and_says_where_the_home_lives():
    html = teams.render_team_section(NS, ["vision", "nlp", "staff"], HUB, "vision", "claim-ann", None)
    assert 'value="vision"' in html and 'value="nlp"' in html and "staff" not in html
    assert 'value="vision" id="ptjaas-team-vision" checked' in html
    assert "home volume claim-ann in namespace jhub-team-nlp" in html
    one = teams.render_team_section(NS, ["vision"], HUB, None, "claim-ann", None)
    assert 'type="hidden" name="team" value="vision"' in one
    assert "Team vision: server and home volume claim-ann in namespace jhub-team-vision" in one
    none = teams.render_team_section(NS, ["staff"], HUB, None, "claim-ann", None)
    assert "in the hub's namespace jhub" in none and 'name="team"' not in none
    assert teams.render_team_section({}, ["vision"], HUB, None, "claim-ann", None) == ""


def test_form_shows_a_legacy_home_and_escapes_names():
    html = teams.render_team_section(NS, ["vision"], HUB, None, "claim-ann", HUB)
    assert "namespace jhub (the hub&#x27;s)" in html and "ptjaas-legacy-home" in html
    evil = {"<b>x</b>": "jhub-team-x"}
    html = teams.render_team_section(evil, ["<b>x</b>", "vision"], HUB, None, "claim-ann", None)
    assert "<b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
