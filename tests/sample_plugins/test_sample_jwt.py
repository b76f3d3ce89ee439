"""jwt-auth-plugin: outputs, the files it writes, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowhost_sample_jwt.plugin import JWTAuthPlugin

from flowhost_sdk import InvocationContext, PermanentError

JWT_FILES = [
    "app/routers/auth.py",
    "app/security.py",
    "app/users.py",
    "requirements.txt",
    "tests/test_auth.py",
]


def add_auth(ctx: InvocationContext, project: Path, **inputs: str) -> JWTAuthPlugin.Outputs:
    return JWTAuthPlugin().invoke(JWTAuthPlugin.Inputs(project_path=str(project), **inputs), ctx)


def test_adds_the_three_endpoints_and_their_files(ctx: InvocationContext, project: Path) -> None:
    outputs = add_auth(ctx, project)

    assert outputs.endpoints == ["POST /register", "POST /login", "GET /me"]
    assert outputs.files_changed == JWT_FILES
    assert all((project / name).is_file() for name in JWT_FILES)
    assert "pyjwt>=" in (project / "requirements.txt").read_text("utf-8")
    security = (project / "app/security.py").read_text("utf-8")
    assert "hashlib.pbkdf2_hmac" in security and "hmac.compare_digest" in security
    assert "import jwt" in security
    routes = (project / "app/routers/auth.py").read_text("utf-8")
    for decorator in ('@router.post("/register"', '@router.post("/login")', '@router.get("/me")'):
        assert decorator in routes
    assert "import app" not in (project / "app/main.py").read_text("utf-8").replace(
        "from app import routers", ""
    ), "main.py must not need editing"


def test_names_the_user_model_as_asked(ctx: InvocationContext, project: Path) -> None:
    add_auth(ctx, project, user_model="Account")
    users = (project / "app/users.py").read_text("utf-8")
    assert "class Account(BaseModel):" in users
    assert "class AccountCreate(BaseModel):" in users
    assert "{{" not in users


def test_rerunning_gives_the_same_outputs_and_files(ctx: InvocationContext, project: Path) -> None:
    first = add_auth(ctx, project)
    requirements = (project / "requirements.txt").read_text("utf-8")
    assert add_auth(ctx, project) == first
    assert (project / "requirements.txt").read_text("utf-8") == requirements
    assert requirements.count("pyjwt") == 1


def test_refuses_a_folder_that_is_not_a_scaffolded_project(
    ctx: InvocationContext, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError) as caught:
        add_auth(ctx, tmp_path)
    assert "not a project made by fastapi-scaffolder" in str(caught.value)
    assert caught.value.hint == "Run fastapi-scaffolder first and pass its project_path output"
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_missing_folder(ctx: InvocationContext, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="not a folder") as caught:
        add_auth(ctx, tmp_path / "nowhere")
    assert caught.value.hint


@pytest.mark.parametrize("user_model", ["user", "Not Valid", "class", "UserStore", "Token", ""])
def test_refuses_an_unusable_user_model(
    ctx: InvocationContext, project: Path, user_model: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        add_auth(ctx, project, user_model=user_model)
    assert caught.value.hint
    assert not (project / "app/users.py").exists()
