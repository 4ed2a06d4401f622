"""The self-serve dashboard's account pages: sign-up and login, API keys, the team, settings.

Views parse, call one service, render; the rules (roles, the last owner, key limits) are the services'.
Every dashboard page goes through `dashboard_view`, and objects are looked up through `request.tenant`
(keys through `visible_keys`), so another tenant's id, or another member's key, is a 404: the page
does not even confirm that it exists.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST


from .dashboard import SESSION_TENANT, attach_membership, dashboard_view, is_manager, key_budget_states, visible_keys
from .forms import (
    AdminKeyForm,
    DashboardKeyCreateForm,
    DashboardKeyForm,
    MemberInviteForm,
    MemberRoleForm,
    ProfileForm,
    RotateKeyForm,
    SignupForm,
    TenantCacheForm,
    TenantNameForm,
    WorkspaceForm,
)
from .models import AdminKey, Membership
from .selectors import api_key_status, example_model, login_refused
from .services import (
    KeyAlreadyIssued,
    admin_key_issue,
    api_key_issue,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    credential_revoke,
    login_failure_record,
    login_success_record,
    member_invite,
    member_remove,
    member_role_change,
    signup,
    tenant_update,
    user_password_set,
    user_profile_update,
    workspace_create,
)

VIA = "dashboard"
OWNER, ADMIN, MEMBER = Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MEMBER
# A key's plaintext between the POST that made it and the one page that shows it (POST/redirect/GET).
# Sessions are stored server-side; the page pops it, so a reload or the back button never shows it again
# (and if that page is never opened, the secret goes when the session does).
SESSION_NEW_KEY = "dashboard_new_key"
SESSION_NEW_ADMIN_KEY = "dashboard_new_admin_key"  # the same, for a tenant admin key (shown on the keys page)


def _form_error(form, exc: ValidationError) -> None:
    """A service's ValidationError on the form: on its field when it names one the form has."""
    if hasattr(exc, "error_dict") and not set(exc.error_dict) <= set(form.fields):
        form.add_error(None, exc.messages)
    else:
        form.add_error(None, exc)


# --- Sign-up, login, workspaces -------------------------------------------------------------------------


def signup_view(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = signup(email=form.cleaned_data["email"], password=form.cleaned_data["password1"],
                          tenant_name=form.cleaned_data["workspace"], via=VIA)
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            login(request, user, backend="accounts.backends.EmailBackend")
            messages.success(request, "Welcome to Gatehouse! Create your first API key to start.")
            return redirect("keys")
    return render(request, "registration/signup.html", {"form": form})


THROTTLED = "Too many failed logins. Wait a few minutes, or reset your password, and try again."


class LoginThrottle:
    """For an AuthenticationForm: refuses without checking the password while the username or the
    client's address is throttled (login_refused), so that both login pages share one limit."""

    refused = False

    def clean(self):
        self.refused = login_refused(username=self.data.get("username", ""), address=client_address(self.request))
        if self.refused:
            raise ValidationError(THROTTLED, code="throttled")
        return super().clean()


class LoginForm(LoginThrottle, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong e-mail or password. Note that the password is case-sensitive.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "E-mail"


class AdminLoginForm(LoginThrottle, AdminAuthenticationForm):
    pass


def client_address(request) -> str:
    # REMOTE_ADDR, never X-Forwarded-For, which any client can set. Behind a reverse proxy the server
    # must be started with its proxy-headers option, or every visitor shares the proxy's counter.
    return request.META.get("REMOTE_ADDR", "")


def login_outcome_record(request, form, response):
    """Count a login POST's outcome (`form`: the bound form, None once it logged in); a refused one is a 429."""
    username = request.POST.get("username", "")
    if form is None:
        login_success_record(username=username)
    elif form.refused:
        response.status_code = 429
    else:
        login_failure_record(username=username, address=client_address(request))
    return response


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        return login_outcome_record(self.request, None, super().form_valid(form))

    def form_invalid(self, form):
        return login_outcome_record(self.request, form, super().form_invalid(form))


def admin_login(request, extra_context=None):
    """The operators' console's login (admin.site.login) under the dashboard's throttle and counters."""
    response = admin.site.login(request, extra_context)
    if request.method != "POST":
        return response
    # The form is in the page it renders again; a redirect means it logged the user in.
    form = response.context_data["form"] if hasattr(response, "context_data") else None
    return login_outcome_record(request, form, response)


@login_required
def no_tenant(request):
    """For a signed-in user in no workspace (removed from their team, or an invitation undone)."""
    if Membership.objects.filter(user=request.user).exists():
        return redirect("dashboard")
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = workspace_create(user=request.user, name=form.cleaned_data["workspace"], via=VIA)
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            request.session[SESSION_TENANT] = membership.tenant_id
            messages.success(request, f"Created the {membership.tenant.name} workspace. Create an API key to start.")
            return redirect("keys")
    return render(request, "dashboard/no_tenant.html", {"form": form})


@dashboard_view()
def home(request):
    return redirect("keys")


@dashboard_view()
@require_POST
def tenant_switch(request):
    tenant_id = request.POST.get("tenant", "")
    if not tenant_id.isdigit():
        raise Http404("No such workspace.")
    # Only among the user's own memberships: any other id is a 404, whether or not the tenant exists.
    membership = get_object_or_404(Membership.objects.select_related("tenant"), user=request.user,
                                   tenant_id=int(tenant_id))
    request.session[SESSION_TENANT] = membership.tenant_id
    messages.success(request, f"Switched to {membership.tenant.name}.")
    return redirect("dashboard")


# --- API keys -------------------------------------------------------------------------------------------


@dashboard_view()
def key_list(request):
    keys = list(visible_keys(request).select_related("created_by").order_by("-created_at"))
    hide_revoked = request.GET.get("revoked") == "hide"
    revoked = sum(1 for key in keys if key.is_revoked)
    if hide_revoked:
        keys = [key for key in keys if not key.is_revoked]
    budgets = key_budget_states([key for key in keys if not key.is_revoked])
    rows = [{"key": key, "budget": budgets.get(key.pk),
             "status": api_key_status(key, over_budget=key.pk in budgets and budgets[key.pk].over)} for key in keys]
    manager = is_manager(request.membership)
    context = {"section": "keys", "rows": rows, "revoked": revoked, "hide_revoked": hide_revoked,
               "show_owner": manager}
    if manager:
        context["admin_keys"] = (AdminKey.objects.filter(tenant=request.tenant).select_related("created_by")
                                 .order_by("revoked_at", "-created_at"))
        context["admin_key_form"] = AdminKeyForm()
        context["new_admin_key"] = request.session.pop(SESSION_NEW_ADMIN_KEY, None)
    response = render(request, "dashboard/keys.html", context)
    if context.get("new_admin_key"):
        add_never_cache_headers(response)
    return response


@dashboard_view(ADMIN)
@require_POST
def admin_key_create(request):
    form = AdminKeyForm(request.POST)
    if form.is_valid():
        issued = admin_key_issue(tenant=request.tenant, name=form.cleaned_data["name"], actor=request.user, via=VIA)
        request.session[SESSION_NEW_ADMIN_KEY] = {"display": issued.credential.display, "plaintext": issued.plaintext}
    else:
        messages.error(request, "Name the admin key (100 characters at most).")
    return redirect("keys")


@dashboard_view(ADMIN)
@require_POST
def admin_key_revoke(request, key_id: int):
    admin_key = get_object_or_404(AdminKey, pk=key_id, tenant=request.tenant)
    credential_revoke(credential=admin_key, actor=request.user, via=VIA)
    messages.success(request, f"Revoked the admin key {admin_key.display}. It stops working at once.")
    return redirect("keys")


@dashboard_view()
def key_create(request):
    form = DashboardKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_issue(tenant=request.tenant, created_by=request.user, via=VIA,
                                   idempotency_key=form.cleaned_data["form_token"], **form.key_settings())
        except KeyAlreadyIssued as already:
            # The form was sent twice. The session is left alone: the first request stores the secret there,
            # and rewriting the session here could drop it.
            return redirect(f"{reverse('key-created')}?key={already.api_key.pk}")
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            _show_once(request, issued, rotated=False)
            return redirect("key-created")
    return render(request, "dashboard/keys_new.html", {"section": "keys", "form": form})


@dashboard_view()
def key_edit(request, key_id: int):
    """Change a key's name and limits in place. Members edit their own keys (visible_keys), with the same
    choices as when they create one; managers every key of the tenant."""
    api_key = get_object_or_404(visible_keys(request), pk=key_id)
    if api_key.is_revoked:
        messages.info(request, f"{api_key.display} is revoked; a revoked key cannot be changed.")
        return redirect("keys")
    form = DashboardKeyForm(request.POST or None, instance=api_key)
    if request.method == "POST" and form.is_valid():
        try:
            api_key_update(api_key=api_key, actor=request.user, via=VIA, **form.key_settings())
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Saved {api_key.name or api_key.display}. The new limits apply within "
                                      "seconds.")
            return redirect("keys")
    budget = key_budget_states([api_key]).get(api_key.pk)
    return render(request, "dashboard/keys_edit.html", {"section": "keys", "form": form, "api_key": api_key,
                                                        "budget": budget}, status=400 if form.errors else 200)


def _show_once(request, issued, *, rotated: bool) -> None:
    request.session[SESSION_NEW_KEY] = {"key_id": issued.api_key.pk, "plaintext": issued.plaintext,
                                        "rotated": rotated}


@dashboard_view()
def key_created(request):
    shown = request.session.pop(SESSION_NEW_KEY, None)
    api_key = shown and visible_keys(request).filter(pk=shown["key_id"]).first()
    if not api_key:
        twice = request.GET.get("key", "")
        if twice.isdigit() and visible_keys(request).filter(pk=int(twice)).exists():
            messages.info(request, "This key was already created: the form was sent twice, and the key made once. "
                                   "Its secret was shown on the page that opened first; if you missed it, rotate "
                                   "the key.")
        else:
            messages.info(request, "A key's secret is shown only once, right after it is created or rotated. "
                                   "Rotate the key to get a new secret.")
        return redirect("keys")
    openai_base = request.build_absolute_uri("/v1")
    anthropic_base = request.build_absolute_uri("/anthropic")
    response = render(request, "dashboard/key_created.html", {
        "section": "keys", "api_key": api_key, "plaintext": shown["plaintext"], "rotated": shown["rotated"],
        "openai_base": openai_base, "anthropic_base": anthropic_base,
        "snippets": snippets(shown["plaintext"], model=example_model(api_key), openai_base=openai_base,
                             anthropic_base=anthropic_base),
    })
    add_never_cache_headers(response)  # no copy of the secret in the browser's or a proxy's cache
    return response


def snippets(key: str, *, model: str, openai_base: str, anthropic_base: str) -> list[tuple[str, str, str]]:
    """(element id, title, code) of ready-to-paste examples using `key`."""
    return [
        ("snippet-curl", "curl", f"""curl {openai_base}/chat/completions \\
  -H "Authorization: Bearer {key}" \\
  -H "Content-Type: application/json" \\
  -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'"""),
        ("snippet-python", "Python (openai)", f"""from openai import OpenAI

client = OpenAI(base_url="{openai_base}", api_key="{key}")
reply = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "Hello"}}],
)
print(reply.choices[0].message.content)"""),
        ("snippet-node", "Node (openai)", f"""import OpenAI from "openai";

const client = new OpenAI({{ baseURL: "{openai_base}", apiKey: "{key}" }});
const reply = await client.chat.completions.create({{
  model: "{model}",
  messages: [{{ role: "user", content: "Hello" }}],
}});
console.log(reply.choices[0].message.content);"""),
        ("snippet-anthropic", "Python (anthropic)", f"""import anthropic

client = anthropic.Anthropic(base_url="{anthropic_base}", api_key="{key}")
message = client.messages.create(
    model="{model}",
    max_tokens=1024,
    messages=[{{"role": "user", "content": "Hello"}}],
)
print(message.content[0].text)"""),
    ]


@dashboard_view()
def key_revoke(request, key_id: int):
    api_key = get_object_or_404(visible_keys(request), pk=key_id)
    if request.method == "POST":
        if api_key.is_revoked:
            messages.info(request, f"{api_key.display} was already revoked.")
        else:
            api_key_revoke(api_key=api_key, actor=request.user, via=VIA)
            messages.success(request, f"Revoked {api_key.display}. It stops working within seconds.")
        return redirect("keys")
    return render(request, "dashboard/keys_revoke.html", {"section": "keys", "api_key": api_key})


@dashboard_view()
def key_rotate(request, key_id: int):
    api_key = get_object_or_404(visible_keys(request), pk=key_id)
    form = RotateKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_rotate(api_key=api_key, grace=timedelta(hours=form.cleaned_data["grace_hours"]),
                                    actor=request.user, via=VIA)
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            _show_once(request, issued, rotated=True)
            return redirect("key-created")
    return render(request, "dashboard/keys_rotate.html", {"section": "keys", "api_key": api_key, "form": form})


# --- Team -----------------------------------------------------------------------------------------------


def _grantable_roles(membership: Membership) -> list[tuple[str, str]]:
    """The roles this manager may give: only owners make owners."""
    return [(value, label) for value, label in Membership.Role.choices
            if value != OWNER or membership.role == OWNER]


def _team_page(request, *, invite_form=None, row_errors=None, status=200):
    members = (Membership.objects.filter(tenant=request.tenant).select_related("user")
               .order_by("created_at", "pk"))
    manager = is_manager(request.membership)
    roles = _grantable_roles(request.membership)
    owners = sum(1 for membership in members if membership.role == OWNER)
    rows = []
    for membership in members:
        # Admins may not touch an owner; owners may change anyone but the last owner, whom the service
        # would keep anyway: no controls that can only end in an error.
        editable = manager and (membership.role != OWNER or (request.membership.role == OWNER and owners > 1))
        rows.append({"membership": membership, "editable": editable,
                     "errors": (row_errors or {}).get(membership.pk, [])})
    return render(request, "dashboard/team.html", {
        "section": "team", "rows": rows, "manager": manager, "roles": roles,
        "invite_form": invite_form or (MemberInviteForm(roles=roles) if manager else None),
    }, status=status)


@dashboard_view()
def team(request):
    return _team_page(request)


@dashboard_view(ADMIN)
@require_POST
def team_invite(request):
    form = MemberInviteForm(request.POST, roles=_grantable_roles(request.membership))
    if form.is_valid():
        try:
            invitation = member_invite(tenant=request.tenant, email=form.cleaned_data["email"],
                                       role=form.cleaned_data["role"], actor=request.user,
                                       site_url=request.build_absolute_uri("/"), via=VIA)
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            email = invitation.membership.user.email or invitation.membership.user.get_username()
            messages.success(request, f"Invited {email}: we e-mailed them a link to set a password."
                             if invitation.new_user else f"Added {email} to the team.")
            return redirect("team")
    return _team_page(request, invite_form=form, status=400)


@dashboard_view(ADMIN)
@require_POST
def team_role(request, membership_id: int):
    membership = get_object_or_404(Membership.objects.select_related("user", "tenant"), pk=membership_id,
                                   tenant=request.tenant)
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        try:
            member_role_change(membership=membership, role=form.cleaned_data["role"], actor=request.user, via=VIA)
        except ValidationError as exc:
            return _team_page(request, row_errors={membership.pk: exc.messages}, status=400)
        messages.success(request, f"{membership.user.email or membership.user.get_username()} is now "
                                  f"{form.cleaned_data['role']}.")
        return redirect("team")
    return _team_page(request, row_errors={membership.pk: form.errors["role"]}, status=400)


@dashboard_view(ADMIN)
def team_remove(request, membership_id: int):
    membership = get_object_or_404(Membership.objects.select_related("user", "tenant"), pk=membership_id,
                                   tenant=request.tenant)
    errors = []
    if request.method == "POST":
        try:
            member_remove(membership=membership, actor=request.user, via=VIA)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Removed {membership.user.email or membership.user.get_username()} "
                                      "from the team.")
            return redirect("team")
    return render(request, "dashboard/team_remove.html", {"section": "team", "target": membership, "errors": errors},
                  status=400 if errors else 200)


# --- Settings -------------------------------------------------------------------------------------------


@dashboard_view()
def account_settings(request):
    user, owner = request.user, request.membership.role == OWNER
    which = request.POST.get("form") if request.method == "POST" else None
    if which == "workspace" and not owner:
        raise PermissionDenied("Only owners rename the workspace.")
    manager = is_manager(request.membership)
    if which == "caching" and not manager:
        raise PermissionDenied("Only owners and admins change prompt caching.")
    profile_form = ProfileForm(request.POST if which == "profile" else None, initial={
        "first_name": user.first_name, "last_name": user.last_name, "email": user.email})
    password_form = PasswordChangeForm(user, request.POST if which == "password" else None)
    password_form.fields["old_password"].widget.attrs.pop("autofocus", None)  # not the first form on the page
    tenant_form = TenantNameForm(request.POST if which == "workspace" else None,
                                 initial={"name": request.tenant.name}) if owner else None
    cache_form = TenantCacheForm(request.POST if which == "caching" else None,
                                 initial={"auto_cache_control": request.tenant.auto_cache_control}) if manager else None

    if which == "profile" and profile_form.is_valid():
        try:
            user_profile_update(user=user, actor=user, via=VIA, **profile_form.cleaned_data)
        except ValidationError as exc:
            _form_error(profile_form, exc)
        else:
            messages.success(request, "Saved your profile.")
            return redirect("account-settings")
    elif which == "password" and password_form.is_valid():
        user_password_set(user=user, password=password_form.cleaned_data["new_password1"], actor=user, via=VIA)
        update_session_auth_hash(request, user)  # stay signed in here; other sessions end
        messages.success(request, "Changed your password.")
        return redirect("account-settings")
    elif which == "workspace" and tenant_form.is_valid():
        try:
            tenant_update(tenant=request.tenant, name=tenant_form.cleaned_data["name"], actor=user, via=VIA)
        except ValidationError as exc:
            _form_error(tenant_form, exc)
        else:
            messages.success(request, "Renamed the workspace.")
            return redirect("account-settings")
    elif which == "caching" and cache_form.is_valid():
        tenant_update(tenant=request.tenant, auto_cache_control=cache_form.cleaned_data["auto_cache_control"],
                      actor=user, via=VIA)
        messages.success(request, "Saved the prompt-caching setting.")
        return redirect("account-settings")
    return render(request, "dashboard/settings.html", {
        "section": "settings", "profile_form": profile_form, "password_form": password_form,
        "tenant_form": tenant_form, "cache_form": cache_form,
    }, status=400 if which else 200)


# --- Error pages (config/urls.py's handler403 and handler404; 500.html is rendered by Django's own) --------


def _error_page(request, template: str, status: int):
    # The navigation of the user's workspace, so that a wrong link is one click from the right page.
    attach_membership(request)
    return render(request, template, {"section": None}, status=status)


def permission_denied(request, exception=None):
    return _error_page(request, "403.html", 403)


def page_not_found(request, exception=None):
    return _error_page(request, "404.html", 404)
