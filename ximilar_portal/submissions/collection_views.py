"""The team's registered Ximilar collections: list, add, edit, delete."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ximilar_portal.accounts.decorators import team_view

from . import selectors
from .forms import CollectionForm


@team_view()
def collection_list(request):
    collections = selectors.collections_for_team(team=request.team)
    return render(request, "submissions/collections.html", {"collections": collections})


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def collection_new(request):
    form = CollectionForm(request.POST or None, team=request.team)
    if request.method == "POST" and form.is_valid():
        collection = form.save(commit=False)
        collection.team, collection.created_by = request.team, request.user
        collection.save()
        messages.success(request, f"Collection “{collection.name}” registered.")
        return redirect("submissions:collections")
    return render(request, "submissions/collection_form.html", {"form": form})


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def collection_edit(request, pk):
    collection = selectors.collection_get(team=request.team, pk=pk)
    form = CollectionForm(request.POST or None, instance=collection, team=request.team)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Collection “{collection.name}” saved.")
        return redirect("submissions:collections")
    context = {"form": form, "collection": collection}
    return render(request, "submissions/collection_form.html", context)


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def collection_delete(request, pk):
    collection = selectors.collection_get(team=request.team, pk=pk)
    if request.method == "POST":
        collection.delete()
        messages.success(request, f"Collection “{collection.name}” removed from the portal.")
        return redirect("submissions:collections")
    return render(request, "submissions/collection_delete.html", {"collection": collection})
