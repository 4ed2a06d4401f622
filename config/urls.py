from django.contrib import admin
from django.urls import path

from gateway.api import api, openai_alias_api
from gateway.views import health, index

urlpatterns = [
    path("", index, name="index"),
    path("health", health, name="health"),
    path("admin/", admin.site.urls),
    path("v1/", api.urls),
    path("openai/v1/", openai_alias_api.urls),
]
