"""The ``jwt-auth-plugin`` plugin: adds JWT authentication to a scaffolded FastAPI project.

It writes ``app/users.py`` (the user model and store), ``app/security.py`` (password hashing,
tokens, the current-user dependency), ``app/routers/auth.py`` (the endpoints, mounted by
``app/main.py`` on its own) and ``tests/test_auth.py``, and adds PyJWT to requirements.txt.
"""

import keyword
import re
from importlib.resources import files

from pydantic import BaseModel, Field

from flowhost_sample_jwt._project import (
    install_templates,
    require_scaffolded_project,
    template_files,
)
from flowhost_sdk import InvocationContext, PermanentError, Plugin

_TEMPLATES = files("flowhost_sample_jwt") / "generated_project"
ENDPOINTS = ["POST /register", "POST /login", "GET /me"]
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
# Names the generated modules define or import next to the user model.
_RESERVED = frozenset(
    {
        "Annotated",
        "APIRouter",
        "BaseModel",
        "CurrentUser",
        "Depends",
        "Field",
        "HTTPAuthorizationCredentials",
        "HTTPBearer",
        "HTTPException",
        "LoginRequest",
        "Settings",
        "SettingsDep",
        "Token",
        "UserRecord",
        "UserStore",
        "UserStoreDep",
        "UsernameTakenError",
    }
)


class JWTAuthPlugin(Plugin):
    """Add register, login (JWT bearer tokens) and /me endpoints, with their tests."""

    name = "jwt-auth-plugin"
    version = "1.0.0"

    class Inputs(BaseModel):
        project_path: str = Field(description="A project made by fastapi-scaffolder")
        user_model: str = Field(default="User", description="Class name of the user model")

    class Outputs(BaseModel):
        endpoints: list[str] = Field(description="The endpoints added, as 'METHOD /path'")
        files_changed: list[str] = Field(
            description="Files this plugin wrote or found up to date, relative to project_path"
        )

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        model = inputs.user_model
        if (
            not _CLASS_NAME.fullmatch(model)
            or keyword.iskeyword(model)
            or {model, f"{model}Create"} & _RESERVED
        ):
            raise PermanentError(
                f"user_model {model!r} cannot be used as the user class name",
                hint="Use a CamelCase class name such as User, Account or Member",
            )
        project = require_scaffolded_project(inputs.project_path, ctx.workdir)
        ctx.progress(0.0, f"adding JWT authentication to {project}")
        changed = install_templates(
            project, template_files(_TEMPLATES), {"user_model": model}, ctx, overwrite=True
        )
        return self.Outputs(endpoints=list(ENDPOINTS), files_changed=changed)
